"""The worst case, in seconds, of each action's step under the pack config, and the check that
the action's st2 timeout covers it. st2 SIGKILLs a python action at its timeout: a step cut
off half-way leaves no report and no local cleanup, so a config whose waits cannot fit is
refused before the step does anything.

Every bound counted here is enforced somewhere: api_timeout per request (cloud.connect, no
retry), ssh.connect_timeout per connect stage, retries with their backoff (sshclient), each
command's timeout plus the host's kill grace (remote_command.bound_on_host), each wait's deadline
plus the probe that may start just before it (cloud.wait_for), waits.refresh for refresh."""
import math
import os

from dvremedy.errors import ConfigError

ACTIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
AUTH_CALLS = 3              # token, then version discovery of compute and block storage
CONNECT_STAGES = 3          # TCP connect, banner + key exchange, authentication
SFTP_UPLOAD_OPS = 4         # open, chmod, write, close: each waits up to connect_timeout
IDENTIFY_CALLS = 9          # server, compute service, volume, its attachments, Nova's list,
#                             instance actions (1 + up to 3 still running)
ATTACHMENTS_VOLUMES = 8     # volumes assumed on one server by the attachments action
POLL_INTERVAL = 0.25        # cloud.POLL_INTERVAL (not imported: keeps openstacksdk out)
CLEANUP_SECONDS = 30        # novamanage.CLEANUP_SECONDS
MARGIN = 1.0                # worst case may equal the timeout; defaults ship with ~20 % more


# building blocks ---------------------------------------------------------------------------

def api(s, calls=1):
    return calls * s.api_timeout


def ssh_connect(s, hosts=1):
    """Connecting to `hosts` hosts in turn, each with every retry and its backoff."""
    from dvremedy.adapters.sshclient import CONNECT_BACKOFF
    stages = CONNECT_STAGES * s.ssh_connect_timeout
    if s.ssh_jump_host:     # the jump host's own stages, then the forwarded channel
        stages += CONNECT_STAGES * s.ssh_connect_timeout + s.ssh_connect_timeout
    backoff = sum(CONNECT_BACKOFF[min(i, len(CONNECT_BACKOFF) - 1)]
                  for i in range(s.ssh_connect_retries))
    return hosts * ((s.ssh_connect_retries + 1) * stages + backoff)


def command(s, seconds=None, bounded=True):
    """One remote command: its channel, its time, the host's kill grace and our wait past it."""
    from dvremedy.adapters.remote_command import KILL_AFTER
    from dvremedy.adapters.sshclient import HOST_GRACE
    seconds = s.ssh_command_timeout if seconds is None else seconds
    return s.ssh_connect_timeout + seconds + ((KILL_AFTER + HOST_GRACE) if bounded else 0)


def wait(seconds, probe):
    """cloud.wait_for: the deadline, a probe that starts just before it, one poll interval."""
    return seconds + probe + POLL_INTERVAL


def upload(s):
    """SFTP set-up (channel, handshake), then the requests (sshclient._open_sftp)."""
    return (2 + SFTP_UPLOAD_OPS) * s.ssh_connect_timeout


# steps -------------------------------------------------------------------------------------

def identify(s):
    return api(s, AUTH_CALLS + IDENTIFY_CALLS) + ssh_connect(s) + 2 * command(s)


def stop_server(s):
    return api(s, AUTH_CALLS + 2) + wait(s.wait_power, api(s))


def restore_power(s):
    return api(s, AUTH_CALLS + 2) + 2 * wait(s.wait_power, api(s))


def get_connector(s):
    return api(s, AUTH_CALLS + 1) + ssh_connect(s) + command(s)


def detach(s):
    return api(s, AUTH_CALLS + 3) + wait(s.wait_detach, api(s, 2))


def refresh(s):
    """Reads, a status reset and its wait, the first controller that answers, then staging
    (mktemp, upload, cp/chown), refresh itself (never killed: waits.refresh) and the
    second-line cleanup. Where Nova refuses a locked instance, the steps unlock and go again:
    one more staging and a refused try (rc 5 comes before any RPC: command_timeout), and the
    unlock and lock requests (counted in the 7 reads and writes)."""
    extra = {"host": 0, "shared_dir": 1, "copy_into": 2}[s.staging]    # chown; cp + chown
    stage = command(s) + upload(s) + extra * command(s)
    cleanup = s.ssh_connect_timeout + (command(s) if s.staging == "copy_into" else 0)
    tries = 2 * (stage + cleanup) + command(s)
    return (api(s, AUTH_CALLS + 7) + wait(s.wait_volume_state, api(s)) +
            ssh_connect(s, max(1, len(s.controller_hosts))) + tries +
            command(s, s.wait_refresh, bounded=False))


def libvirt_detach(s):
    """Two passes (live, config): dumpxml, domstate, one detach-disk each; then detach."""
    return api(s, 1) + ssh_connect(s) + 6 * command(s) + detach(s)


def verify(s):
    return identify(s)


def attachments(s):
    return (api(s, AUTH_CALLS + 3 + ATTACHMENTS_VOLUMES) + ssh_connect(s) +
            2 * command(s))


API_KEYS = ["api_timeout"]
SSH_KEYS = ["ssh.connect_timeout", "ssh.connect_retries", "ssh.command_timeout"]
STEPS = {   # action name: (worst case, the config keys it grows with)
    "identify": (identify, API_KEYS + SSH_KEYS),
    "verify": (verify, API_KEYS + SSH_KEYS),
    "stop_server": (stop_server, API_KEYS + ["waits.power"]),
    "restore_power": (restore_power, API_KEYS + ["waits.power"]),
    "get_connector": (get_connector, API_KEYS + SSH_KEYS),
    "detach": (detach, API_KEYS + ["waits.detach"]),
    "refresh": (refresh, API_KEYS + SSH_KEYS + ["waits.volume_state", "waits.refresh",
                                                "controller.hosts", "controller.staging"]),
    "libvirt_detach": (libvirt_detach, API_KEYS + SSH_KEYS + ["waits.detach"]),
    "attachments": (attachments, API_KEYS + SSH_KEYS),
}
# the step function each action runs -> its action (the audit scales with the cloud: no check)
ACTION_OF = {("dvremedy.steps.remedy", name): name for name in
             ("identify", "verify", "stop_server", "restore_power", "get_connector",
              "detach", "refresh", "libvirt_detach")}
ACTION_OF[("dvremedy.steps.attachments", "list_attachments")] = "attachments"


def worst_case(action, settings):
    """Seconds the action may take at most under settings (rounded up)."""
    return int(math.ceil(STEPS[action][0](settings)))


def action_timeout(action):
    """The timeout an action ships with (actions/<action>.yaml). st2 lets a caller pass
    another one (`st2 run ... timeout=`), which the action cannot see: the shipped default is
    what the pack's workflows and rules run with."""
    import yaml  # shipped with st2
    path = os.path.join(ACTIONS_DIR, action + ".yaml")
    with open(path) as f:
        meta = yaml.safe_load(f)
    return meta["parameters"]["timeout"]["default"]


def check(step, settings):
    """Refuse (ConfigError) when the step's worst case under settings exceeds its action's
    timeout; steps that are not an action's (tests, helpers) pass."""
    action = ACTION_OF.get((getattr(step, "__module__", None), getattr(step, "__name__", None)))
    if action is None:
        return
    worst, limit = worst_case(action, settings), action_timeout(action)
    if worst * MARGIN <= limit:
        return
    keys = STEPS[action][1]
    raise ConfigError(
        "the pack config lets %s run up to %d s, but the action's timeout is %d s "
        "(actions/%s.yaml): st2 would kill it half-way. Nothing was done. Lower %s in "
        "/opt/stackstorm/configs/dangling_volume.yaml and run `st2ctl reload "
        "--register-configs`, or raise `timeout` in actions/%s.yaml to at least %d and run "
        "`st2ctl reload --register-actions` (a timeout= given to `st2 run` is not seen here)"
        % (action, worst, limit, action, " / ".join(keys), action, worst),
        step=action, worst_case_s=worst, action_timeout_s=limit, config_keys=keys)
