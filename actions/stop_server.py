"""st2 glue for dvremedy.steps.remedy.stop_server (see stop_server.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import stop_server


class StopServer(Action):
    def run(self, server_id, cloud=""):
        return run_step(self.config, stop_server, self.logger, cloud=cloud or None,
                        server_id=server_id)
