"""st2 glue for dvremedy.steps.remedy.detach (see detach.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import detach


class Detach(Action):
    def run(self, server_id, volume_id, cloud=""):
        return run_step(self.config, detach, self.logger, cloud=cloud or None,
                        server_id=server_id, volume_id=volume_id)
