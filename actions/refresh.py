"""st2 glue for dvremedy.steps.remedy.refresh (see refresh.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import refresh


class Refresh(Action):
    def run(self, server_id, volume_id, connector, cloud=""):
        return run_step(self.config, refresh, self.logger, cloud=cloud or None,
                        server_id=server_id, volume_id=volume_id,
                        connector=connector)
