"""The pure model: what the three views say (classify), what to do about it (plan), the
audit's correlation of a whole cloud (correlate, audit_report), the disk-to-volume rule (disks),
the sweep's plan and summary (sweep) and the reports people read (report). No I/O, and no
import of dvremedy.adapters or dvremedy.steps."""
