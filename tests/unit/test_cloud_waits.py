"""Waits: a deadline, a failure set, progress on every change of state (injected clock)."""
import pytest

from dvremedy.adapters.cloud import wait_for
from dvremedy.errors import StateError, WaitTimeout


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def states(*seq):
    it = iter(seq)
    return lambda: next(it)


def test_returns_when_done_and_reports_each_change():
    clock, heard = Clock(), []
    probe = states(("ACTIVE/powering-off", False, False), ("ACTIVE/powering-off", False, False),
                   ("SHUTOFF", True, False))
    assert wait_for("stop", probe, 10, progress=heard.append, interval=0.25, clock=clock,
                    sleep=clock.sleep) == "SHUTOFF"
    assert heard == ["stop: ACTIVE/powering-off after 0.0 s", "stop: SHUTOFF after 0.5 s"]


def test_a_failure_state_fails_at_once_naming_it():
    clock = Clock()
    with pytest.raises(StateError, match="reached error"):
        wait_for("volume", states(("creating", False, False), ("error", False, True)), 10,
                 step="detach", clock=clock, sleep=clock.sleep)


def test_the_deadline_fails_with_the_last_state_seen():
    clock = Clock()
    with pytest.raises(WaitTimeout) as exc:
        wait_for("detach", lambda: ("detaching", False, False), 3, step="detach",
                 interval=0.25, clock=clock, sleep=clock.sleep)
    # the words an operator looks for first: it timed out, after how long, in which state
    assert "timed out after 3 s waiting for detach: still detaching" in str(exc.value)
    assert exc.value.evidence()["state"] == "detaching" and exc.value.step == "detach"
    assert clock.now == pytest.approx(3.0)
