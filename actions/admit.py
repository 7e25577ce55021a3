"""st2 glue for dvremedy.steps.admission.admit (see admit.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.admission import admit


class Admit(Action):
    def run(self, mode, triggered_by=None, user="", execution_id=""):
        return run_step(self.config, admit, self.logger, store=self.action_service, mode=mode,
                        triggered_by=triggered_by, user=user, execution_id=execution_id)
