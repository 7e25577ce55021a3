"""st2 glue for dvremedy.steps.remedy.verify (see verify.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import verify


class Verify(Action):
    def run(self, server_id, volume_id, cloud="", expect="detached"):
        return run_step(self.config, verify, self.logger, cloud=cloud or None,
                        server_id=server_id, volume_id=volume_id, expect=expect)
