"""How an action runs its step: settings from the pack config, a lazy OpenStack connection and
one SSH session per host (StepContext), and the single boundary where typed errors become a
failed action result (run_step). Actions call run_step() and nothing else; nothing here
imports st2."""
import re
import time

from dvremedy import budget
from dvremedy.errors import RemedyError, SSHError
from dvremedy.settings import Settings


class StepContext:
    """Connections for one action run, opened on first use. A context manager: leaving it
    closes them."""

    def __init__(self, settings, logger=None, cloud=None):
        self.settings = settings
        self.logger = logger
        self.cloud = cloud
        self._conn = None
        self._ssh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def conn(self):
        if self._conn is None:
            from dvremedy.adapters.cloud import connect
            self._conn = connect(self.settings, self.cloud)
        return self._conn

    def open_session(self, host):
        """A new SSH session to a host, for the caller to use as a context manager (the
        audit's per-host threads: one connection each, closed when its read ends)."""
        return session_opener(self.settings)(host)

    def ssh(self, host):
        """The SSH session to a Nova host name (one per host within an action)."""
        if self._ssh is None:
            from dvremedy.adapters.sshclient import SSHPool
            self.settings.require_ssh_key()
            self._ssh = SSHPool(lambda name: ssh_target(self.settings, name))
        return self._ssh.get(host)

    def controller(self):
        """(host, session) of the first configured controller that accepts the connection."""
        self.settings.require_ssh()
        failures = []
        for host in self.settings.controller_hosts:
            try:
                return host, self.ssh(host)
            except SSHError as exc:
                failures.append(exc.evidence())
        raise SSHError("no controller host answered: %s" % "; ".join(
            f["message"] for f in failures), step="refresh", tried=failures)

    def progress(self, message):
        if self.logger:
            self.logger.info(message)

    def close(self):
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # pylint: disable=broad-except
                pass    # closing must not hide the step's own outcome
            self._conn = None


def session_opener(settings):
    """open_session(host) -> a new SSHSession, to use as a context manager. The audit needs no
    controller, only the SSH key (the remedy also needs a controller: settings.require_ssh)."""
    from dvremedy.adapters.sshclient import SSHSession

    def open_session(host):
        return SSHSession(ssh_target(settings, host))
    return open_session


def ssh_target(settings, host):
    """How to reach a Nova host name over SSH, from the pack's settings (a jump host included):
    the one place the remedy's steps and the audit's hypervisor reads build it."""
    from dvremedy.adapters.sshclient import SSHTarget
    s = settings
    jump = None
    if s.ssh_jump_host:
        jump = SSHTarget(host=s.ssh_jump_host, address=s.ssh_jump_host, port=s.ssh_jump_port,
                         user=s.ssh_user, key_file=s.ssh_key_file,
                         known_hosts_file=s.ssh_known_hosts, jump=None,
                         connect_timeout=s.ssh_connect_timeout,
                         command_timeout=s.ssh_command_timeout)
    # retries live on the outer target: SSHSession.open retries the whole chain
    return SSHTarget(host=host, address=s.address_for(host), port=s.ssh_port, user=s.ssh_user,
                     key_file=s.ssh_key_file, known_hosts_file=s.ssh_known_hosts, jump=jump,
                     connect_timeout=s.ssh_connect_timeout,
                     command_timeout=s.ssh_command_timeout,
                     connect_retries=s.ssh_connect_retries)


_MARKER_OPENING = re.compile(r"\{(?=[{%#])")


def inert(value):
    """value with every Jinja marker opening ({{, {%, {#) broken by a space, in every string,
    keys included. A step's result becomes the next actions' parameters, and st2 renders any
    parameter holding a marker as a template when it schedules the run: text from the cloud (a
    volume's name, an API error, a command's stderr) must stay data. One pass is enough: every
    brace that would open a marker is followed by the inserted space, the others keep their
    character."""
    if isinstance(value, str):
        return _MARKER_OPENING.sub("{ ", value)
    if isinstance(value, dict):
        return {inert(k): inert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inert(v) for v in value]
    return value


def run_step(config, step, logger=None, cloud=None, **params):
    """Run one step with fresh connections: (True, result) or (False, {"error": evidence,
    "text": what a person reads}). The one place where typed errors are turned into an st2
    result, and where every result is made inert (see inert()). A config whose worst case does
    not fit the action's timeout is refused before anything is done (dvremedy.budget)."""
    started = time.monotonic()
    try:
        settings = Settings(config)
        budget.check(step, settings)
        with StepContext(settings, logger, cloud) as ctx:
            result = step(ctx, **params)
        result.setdefault("duration_s", round(time.monotonic() - started, 2))
        return True, inert(result)
    except RemedyError as exc:
        if logger:
            logger.error("%s: %s", exc.kind, exc.message)
        evidence = exc.evidence()
        return False, inert({"error": evidence, "text": error_text(evidence),
                             "duration_s": round(time.monotonic() - started, 2)})


def error_text(evidence):
    """A failed step as a person reads it: what failed, and what to do next."""
    lines = ["%s failed: %s" % (evidence.get("step") or "the step", evidence["message"])]
    if evidence.get("advice"):
        lines.append("next: %s" % evidence["advice"])
    return "\n".join(lines)
