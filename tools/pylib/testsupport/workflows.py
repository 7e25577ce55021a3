"""The remedy workflow's test helpers: st2local executors scripting its actions, and a runner."""
import os

import st2local
from st2local import py_result

from dvremedy.model.classify import classify
from dvremedy.model.plan import make_plan
from testsupport.views import SERVER, VOLUME

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

P = "dangling_volume."


def identify_result(views, detach=True, allow=False, mode="manual"):
    verdict = classify(views)
    return {"views": views, "classification": verdict,
            "plan": make_plan(views, verdict, detach, allow, mode)}


def ok_step(step, changed=True, **facts):
    return py_result(dict({"step": step, "changed": changed, "did": step + " done"}, **facts))


def failed_step(step, message):
    return py_result({"error": {"kind": "command", "step": step, "message": message}},
                     status="failed")


def verify_result(consistent=True, disk_left=False):
    return ok_step("verify", False, consistent=consistent, expect="detached",
                   disk_left_on_domain=disk_left,
                   classification={"class": "healthy" if consistent else "nova_only",
                                   "problems": [] if consistent else ["nova_only"]})


def scripted(views, **overrides):
    """Every cloud-facing action scripted as succeeding; overrides replace some."""
    ex = {
        P + "identify": lambda params: py_result(identify_result(
            views, params["detach"], params["allow_libvirt_detach"], params["mode"])),
        P + "stop_server": ok_step("stop"),
        P + "get_connector": ok_step("get_connector", False, connector={"host": "cmp1"}),
        P + "refresh": ok_step("refresh"),
        P + "detach": ok_step("detach"),
        P + "verify": verify_result(),
        P + "libvirt_detach": ok_step("libvirt_detach"),
        P + "restore_power": lambda params: ok_step("start", params["power"] == "running",
                                                    power=params["power"]),
    }
    ex.update({P + k: v for k, v in overrides.items()})
    return ex


def remedy(views, executors=None, order=None, config=None, answer=None, datastore=None,
           **params):
    """Conduct the remedy; `ran` is the task order without `admit` (right after identify, only
    when the plan changes something: tested in test_remedy_automatic) and the action-less turn
    to the planned path, `dispatch`."""
    parameters = dict({"server_id": SERVER, "volume_id": VOLUME}, **params)
    execution = st2local.run_action(REPO, P + "remedy", parameters,
                                    executors=executors or scripted(views),
                                    completion_order=order, progress=None,
                                    config=dict({"cloud": "lab"}, **(config or {})),
                                    answer=answer, datastore_path=datastore)
    ran = [t["id"] for t in sorted(execution["tasks"], key=lambda t: t["start"])]
    assert ran[0] == "identify", ran
    report = (execution["result"].get("output") or {}).get("report")
    return (execution["status"], [t for t in ran if t not in ("admit", "dispatch")], report,
            execution)


def params_of(execution, task):
    return [t for t in execution["tasks"] if t["id"] == task]
