"""st2 glue for dvremedy.model.report.build_report (see report.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.model.report import build_report


class Report(Action):
    def run(self, server_id, volume_id, outcome, plan=None, steps=None, final=None,
            error=None, failed_step="", dry_run=False, mode="manual", triggered_by=None,
            approval=None, left_off=None):
        report = build_report(server_id, volume_id, outcome, plan, steps, final, error,
                              failed_step or None, dry_run, mode, triggered_by, approval,
                              left_off)
        self.logger.info(report["text"])
        return True, report
