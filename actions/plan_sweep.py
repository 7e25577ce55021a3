"""st2 glue for dvremedy.model.sweep.plan_sweep (see plan_sweep.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.model.sweep import plan_sweep
from dvremedy.settings import Settings


class PlanSweep(Action):
    def run(self, audit, detach=False):
        concurrency = Settings(self.config).audit_sweep_concurrency
        return True, plan_sweep(audit, concurrency, detach)
