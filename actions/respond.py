"""st2 glue for dvremedy.steps.respond.respond_step (see respond.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.respond import respond_step


class Respond(Action):
    def run(self, inquiry_id, approved):
        return run_step(self.config, respond_step, self.logger, inquiry_id=inquiry_id,
                        approved=approved)
