"""st2 glue for dvremedy.steps.remedy.restore_power (see restore_power.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import restore_power


class RestorePower(Action):
    def run(self, server_id, power, cloud=""):
        return run_step(self.config, restore_power, self.logger, cloud=cloud or None,
                        server_id=server_id, power=power)
