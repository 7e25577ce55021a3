"""st2 glue for dvremedy.steps.remedy.get_connector (see get_connector.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import get_connector


class GetConnector(Action):
    def run(self, server_id, cloud=""):
        return run_step(self.config, get_connector, self.logger, cloud=cloud or None,
                        server_id=server_id)
