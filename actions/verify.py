"""st2 glue for dvremedy.steps.verify (see verify.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.glue import run_step
from dvremedy.steps import verify


class Verify(Action):
    def run(self, server_id, volume_id, cloud="", expect="detached"):
        return run_step(self.config, verify, self.logger, cloud=cloud or None,
                        server_id=server_id, volume_id=volume_id, expect=expect)
