"""st2 glue for dvremedy.steps.audit.run (see audit.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps import audit


class Audit(Action):
    def run(self, scope="all", project="", host="", deep=False, report_path="", cloud=""):
        return run_step(self.config, audit.run, self.logger, cloud=cloud or None, scope=scope,
                        project=project, host=host, deep=deep, report_path=report_path)
