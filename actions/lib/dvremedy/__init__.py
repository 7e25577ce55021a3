"""dangling_volume's logic, shared by the pack's actions (on st2's action path as actions/lib).
Never imports st2: the actions are the only st2 glue.

  runner     run_step: settings, connections and the one place errors become a result
  steps/     one function per action: read through adapters, decide with model, act, report
  model/     pure: classify, plan, correlate, disks, reports (imports neither of the others)
  adapters/  OpenStack (openstacksdk), SSH, nova-manage, virsh, report files
  settings, budget, errors: the pack config, the timeouts it allows, the typed errors
"""
