"""st2 glue for dvremedy.steps.attachments.list_attachments (see attachments.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.attachments import list_attachments


class Attachments(Action):
    def run(self, server_id, cloud=""):
        return run_step(self.config, list_attachments, self.logger, cloud=cloud or None,
                        server_id=server_id)
