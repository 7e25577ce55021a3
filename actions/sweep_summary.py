"""st2 glue for dvremedy.model.sweep.summarize (see sweep_summary.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.model.sweep import summarize


class SweepSummary(Action):
    def run(self, plan, results=None, dry_run=False, audit=None):
        summary = summarize(plan, results, dry_run, audit)
        self.logger.info(summary["text"])
        return True, summary
