"""`nova-manage volume_attachment` (get_connector, show, refresh) over an SSH session.

The caller gives the command prefix as a list, because where nova-manage lives differs per
deployment: ["nova-manage"], ["sudo", "nova-manage"],
["docker", "exec", "nova_conductor", "nova-manage"], ... Exit codes are decoded into
NovaManageError with the documented meaning and what the operator should do next
(docs/nova-manage.md, "Exit codes and advice")."""

import contextlib
import json
import logging
import posixpath
import uuid

from dvremedy.errors import (CommandError, InputError, NotFound, NovaManageError, RemedyError,
                             SSHError, tail)
from dvremedy.adapters.remote_command import bound_on_host, quote_argv
from dvremedy.settings import OWNER_PATTERN

LOG = logging.getLogger(__name__)

CONNECTOR_KEYS = ("host", "platform", "os_type", "ip", "multipath")
TEMP_NAME = "dvremedy-connector.XXXXXXXXXX"
CONTAINER_ENGINES = ("docker", "podman")
DEFAULT_REFRESH_WAIT = 600      # waits.refresh's default (config.schema.yaml)
CLEANUP_SECONDS = 30            # bound of each removal the host runs after refresh

NOT_RUNNABLE = {
    126: "the nova-manage command is not executable on this host",
    127: "the nova-manage command was not found on this host",
}
NOT_RUNNABLE_ADVICE = ("check the nova-manage command prefix configured for this host (e.g. "
                       "['nova-manage'], ['sudo', 'nova-manage'] or ['docker', 'exec', "
                       "'nova_conductor', 'nova-manage'])")

GET_CONNECTOR_ADVICE = (
    "read nova-manage.log on the host for the trace. Usual causes: os-brick cannot start its "
    "privsep helper (sudo / nova-rootwrap missing or misconfigured); or "
    "[libvirt]volume_use_multipath=True while multipathd is unreachable (typical in containers: "
    "os-brick before 6.10 enforces multipath and fails). Run it where nova-compute runs, with "
    "nova-compute's own configuration")

REFRESH_CODES = {
    1: ("unexpected error",
        "read nova-manage.log on the node that ran it; a MessagingTimeout means the instance's "
        "nova-compute is down or unreachable over RPC: bring it up and refresh again"),
    2: ("invalid input: the connector file is missing, or Cinder refused the new attachment",
        "read the message in the output and fix its cause"),
    3: ("the connector file cannot be read or is not valid JSON",
        "the file must be readable by the user nova-manage runs as: in a container, set "
        "`controller.owner` in the pack config to that user or uid (kolla: nova), then "
        "`st2ctl reload --register-configs`; and it must hold the JSON printed by "
        "get_connector --json"),
    4: ("the instance does not exist",
        "check the server UUID, and that this node's nova.conf reaches the right API and cell "
        "databases"),
    5: ("the instance is in the wrong state: it must be stopped",
        "stop the server (openstack server stop <server>), wait for SHUTOFF, then refresh again. "
        "Nova before 27.5.1 / 28.3.0 also refuses a locked instance: unlock it first"),
    6: ("the volume is not attached to the instance (no block device mapping)",
        "nothing to refresh: compare 'openstack server volume list' with 'nova-manage "
        "volume_attachment show'; the mapping may already be gone"),
    7: ("the connector's host is not the instance's host",
        "get_connector was run on the wrong compute host, or the instance's host record is "
        "wrong: run get_connector on the instance's host (OS-EXT-SRV-ATTR:host) and retry"),
}
REFRESH_TIMEOUT_ADVICE = (
    "refresh may still be running (it locks the instance until it ends): wait, then check "
    "'openstack server event list' (refresh_volume_attachment) and nova-manage "
    "volume_attachment show before retrying; raise waits.refresh if refresh is just slow")
REFRESH_LOST_ADVICE = (
    "the SSH connection broke while refresh ran; it may still be running on the controller "
    "(it locks the instance until it ends): " + REFRESH_TIMEOUT_ADVICE.split(": ", 1)[1])
STAGING_ADVICE = ("nothing was refreshed: fix the cause above (disk space, permissions, the "
                  "container's name and engine, controller.owner), then run the remedy again")
RC2_AFTERMATH = ("a failed refresh can leave the volume 'reserved' with an empty attachment and "
                 "the BDM without connection_info: refresh again (that works from this state) "
                 "before starting the server")
# rc 2 is any nova InvalidInput; these are the texts seen on a live Nova 34 / Cinder 29
REFRESH_RC2_CASES = (
    ("current status is detaching",
     "the volume is stuck 'detaching': reset it to 'in-use' while its attachment still exists "
     "(cinder reset-state --state in-use <volume>), then refresh again"),
    ("doesn't have required information: initiator",
     "the connector has no iSCSI initiator: the hypervisor needs open-iscsi and "
     "/etc/iscsi/initiatorname.iscsi; fix that, run get_connector again, then refresh"),
    ("connector file not found",
     "nova-manage cannot see the connector file: when it runs in a container, use staging "
     "copy_into or shared_dir"),
)


def validate_connector(connector, expected_host=None):
    """Check a connector dict has the keys os-brick always sets; returns it unchanged."""
    if not isinstance(connector, dict):
        raise InputError("the connector must be a JSON object, got %s"
                         % type(connector).__name__)
    missing = [key for key in CONNECTOR_KEYS if key not in connector]
    if missing:
        raise InputError("the connector lacks %s (get_connector --json always prints %s)"
                         % (", ".join(missing), ", ".join(CONNECTOR_KEYS)), missing=missing)
    if not isinstance(connector["host"], str) or not connector["host"]:
        raise InputError("the connector's 'host' must be a non-empty string")
    if not isinstance(connector["multipath"], bool):
        raise InputError("the connector's 'multipath' must be true or false, got %r"
                         % (connector["multipath"],))
    if expected_host is not None and connector["host"] != expected_host:
        raise InputError(
            "the connector is from host %r but the instance is on %r: refresh would fail with "
            "rc 7. Run get_connector on %s" % (connector["host"], expected_host, expected_host),
            connector_host=connector["host"], expected_host=expected_host)
    return connector


def parse_connector(text, expected_host=None):
    """The connector dict from get_connector --json output (stray lines around it ignored)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        connector = json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        try:
            connector = json.loads(text[start:end + 1]) if 0 <= start < end else None
        except ValueError:
            connector = None
        if connector is None:
            raise InputError("the connector is not valid JSON: %s" % tail(text.strip(), 200))
    return validate_connector(connector, expected_host)


def get_connector(session, nova_manage_prefix, expected_host=None, timeout=None):
    """Run get_connector --json on the hypervisor `session` is connected to."""
    argv = _argv(nova_manage_prefix, "get_connector", "--json")
    result = session.run(argv, timeout=timeout)
    if result.exit_code != 0:
        meaning, advice = NOT_RUNNABLE.get(result.exit_code), NOT_RUNNABLE_ADVICE
        if meaning is None:
            meaning = "unexpected error" if result.exit_code == 1 else "undocumented exit code"
            advice = GET_CONNECTOR_ADVICE
        raise _error(NovaManageError, "get_connector", session, result, meaning, advice)
    return parse_connector(result.stdout, expected_host)


def show(session, nova_manage_prefix, server_id, volume_id, timeout=None):
    """The block device mapping as a dict. Its 'connection_info' stays a JSON string, as
    nova-manage prints it: decode it with connection_info()."""
    argv = _argv(nova_manage_prefix, "show", _uuid("server_id", server_id),
                 _uuid("volume_id", volume_id), "--json")
    result = session.run(argv, timeout=timeout)
    if result.exit_code == 2:
        raise _error(NotFound, "show", session, result, "the instance (or its cell mapping) "
                     "does not exist", "check the server UUID")
    if result.exit_code == 3:
        raise _error(NotFound, "show", session, result, "the volume is not attached to the "
                     "instance (no block device mapping)", "check the volume UUID")
    if result.exit_code != 0:
        meaning = NOT_RUNNABLE.get(result.exit_code, "unexpected error")
        advice = NOT_RUNNABLE_ADVICE if result.exit_code in NOT_RUNNABLE else \
            "read nova-manage.log on the node that ran it"
        raise _error(NovaManageError, "show", session, result, meaning, advice)
    try:
        bdm = json.loads(result.stdout)
    except ValueError:
        bdm = None
    if not isinstance(bdm, dict):
        raise _error(NovaManageError, "show", session, result, "output is not a JSON object",
                     "check that this nova-manage supports --json (Nova 24 Xena or later)")
    return bdm


def connection_info(bdm):
    """The decoded connection_info of a show() result (None when Nova has none)."""
    raw = bdm.get("connection_info")
    if not raw:
        return None
    return json.loads(raw) if isinstance(raw, str) else raw


def refresh(session, nova_manage_prefix, server_id, volume_id, connector, *, staging=None,
            timeout=None, expected_host=None):
    """Run `refresh <server> <volume> <connector file>` with the connector written to a private
    temporary file that is removed afterwards, whatever happens. `staging` says how the file
    reaches a containerised nova-manage (None: it runs on the host itself):
      {"copy_into": {"engine": "docker"|"podman", "container": "nova_conductor",
                     "container_dir": "/tmp", "owner": "nova"}}  (last two optional)
      {"shared_dir": "/host/dir", "container_dir": "/dir/in/container", "owner": "42436"}
    refresh is never killed (it holds the instance lock): `timeout` (waits.refresh; default
    DEFAULT_REFRESH_WAIT) only bounds how long we wait for it.

    Every error raised carries two documented evidence keys for the caller:
      refresh_started: True once the refresh command was sent to the host; False when the
        failure came before (validation, mktemp, upload, staging): nothing was changed.
      needs_unlock: True on rc 5 when the output says the instance is locked / must be
        unlocked (Nova before 27.5.1 / 28.3.0 refuses a locked instance)."""
    progress = {"refresh_started": False}
    try:
        return _refresh(session, nova_manage_prefix, server_id, volume_id, connector, staging,
                        timeout, expected_host, progress)
    except RemedyError as err:
        err.details.setdefault("refresh_started", progress["refresh_started"])
        raise


def _refresh(session, nova_manage_prefix, server_id, volume_id, connector, staging, timeout,
             expected_host, progress):
    if not isinstance(connector, dict):
        connector = parse_connector(connector)
    validate_connector(connector, expected_host)
    argv_head = _argv(nova_manage_prefix, "refresh", _uuid("server_id", server_id),
                      _uuid("volume_id", volume_id))
    timeout = DEFAULT_REFRESH_WAIT if timeout is None else timeout
    data = json.dumps(connector, sort_keys=True)
    leftovers = []
    try:
        with _staged_file(session, data, staging, leftovers) as (path, removals):
            progress["refresh_started"] = True
            result = _run_refresh(session, argv_head + [path], removals, timeout)
    except CommandError as err:
        if leftovers:
            err.details["leftover_files"] = leftovers
        raise
    if result.exit_code != 0:
        err = _refresh_error(session, result)
        if leftovers:
            err.details["leftover_files"] = leftovers
        raise err
    out = {"exit_code": 0, "duration_s": result.duration,
           "output_tail": tail((result.stdout + result.stderr).strip())}
    if leftovers:
        out["leftover_files"] = leftovers
    return out


def _run_refresh(session, argv, removals, timeout):
    """The refresh command, never killed half-way (nova-manage would leave the instance
    locked), wrapped so that the host removes the staged files when it ends (see
    _then_remove): no cleanup depends on this process, which st2 SIGKILLs on its timeout."""
    try:
        return session.run(_then_remove(argv, removals), timeout=timeout,
                           kill_on_timeout=False)
    except SSHError as err:
        raise NovaManageError("nova-manage volume_attachment refresh on %s: %s"
                              % (session.target.host, err.message), step="refresh",
                              meaning="connection lost", advice=REFRESH_LOST_ADVICE,
                              **err.details)
    except CommandError as err:     # without check=True, only a timeout
        raise NovaManageError(err.message, step="refresh", meaning="timed out",
                              advice=REFRESH_TIMEOUT_ADVICE, **err.details)


def _then_remove(argv, removals):
    """sh -c '"$@"; rc=$?; <removals>; exit $rc' sh <argv...>: argv runs exactly as given
    (positional parameters, no re-quoting), then each removal (argv-quoted, bounded, output
    discarded), then the shell exits with argv's own exit code."""
    if not removals:
        return list(argv)
    steps = ["%s >/dev/null 2>&1" % quote_argv(bound_on_host(r, CLEANUP_SECONDS))
             for r in removals]
    script = '"$@"; rc=$?; %s; exit "$rc"' % "; ".join(steps)
    return ["sh", "-c", script, "dvremedy-refresh"] + list(argv)


def _refresh_error(session, result):
    code = result.exit_code
    if code in NOT_RUNNABLE:
        return _error(NovaManageError, "refresh", session, result, NOT_RUNNABLE[code],
                      NOT_RUNNABLE_ADVICE)
    meaning, advice = REFRESH_CODES.get(code, ("undocumented exit code",
                                               REFRESH_CODES[1][1]))
    output = (result.stdout + "\n" + result.stderr).lower()
    if code == 2:
        advice = next((case for text, case in REFRESH_RC2_CASES if text in output), advice)
        advice += "; " + RC2_AFTERMATH
    err = _error(NovaManageError, "refresh", session, result, meaning, advice)
    if code == 5 and "locked" in output:    # "must be unlocked", "in locked True"
        err.details["needs_unlock"] = True
    return err


@contextlib.contextmanager
def _staged_file(session, data, staging, leftovers):
    """Yield (path nova-manage should open, removals: argv lists that delete every copy on
    the host). Every copy is also removed here on exit (the second line, should the host's
    removal not have run); the ones that could not be are appended to `leftovers`."""
    mode, spec = _staging_spec(staging)
    cleanups, removals = [], []
    try:
        path = _stage(session, data, mode, spec, cleanups, removals)
    except CommandError as err:
        _clean(session, cleanups, leftovers)
        raise _staging_error(session, err)
    try:
        yield path, removals
    finally:
        _clean(session, cleanups, leftovers)


def _stage(session, data, mode, spec, cleanups, removals):
    """Write the connector where nova-manage can read it; returns its path there."""
    host_dir = spec.get("shared_dir", "/tmp") if mode == "shared_dir" else "/tmp"
    host_path = _mktemp(session, host_dir)
    cleanups.append((host_path, lambda: session.remove(host_path)))
    removals.append(["rm", "-f", "--", host_path])
    session.upload(data, host_path, mode=0o600)
    if mode is None:
        return host_path
    path = posixpath.join(spec.get("container_dir", "/tmp"), posixpath.basename(host_path))
    if mode == "copy_into":
        engine, container = spec["engine"], spec["container"]
        in_container = [engine, "exec", "-u", "root", container]
        target = "%s:%s" % (container, path)
        session.run([engine, "cp", host_path, target], check=True)
        cleanups.append((target, lambda: session.run(in_container + ["rm", "-f", path],
                                                     check=True)))
        removals.append(in_container + ["rm", "-f", path])
        if spec.get("owner"):
            session.run(in_container + ["chown", spec["owner"], path], check=True)
    elif spec.get("owner"):
        session.run(["chown", spec["owner"], host_path], check=True)
    return path


def _clean(session, cleanups, leftovers):
    for name, remove in reversed(cleanups):
        try:
            remove()
        except (CommandError, SSHError) as exc:
            LOG.warning("could not remove the connector copy %s on %s: %s", name,
                        session.target.host, exc)
            leftovers.append(name)
    del cleanups[:]


def _staging_error(session, err):
    """A failure before refresh ran (mktemp, upload, cp, chown) as a NovaManageError."""
    if isinstance(err, NovaManageError):
        return err
    details = dict(err.details, host=session.target.host)
    return NovaManageError("staging the connector file for refresh on %s failed: %s"
                           % (session.target.host, err.message), step="refresh",
                           meaning="staging failed", advice=STAGING_ADVICE, **details)


def _staging_spec(staging):
    """(None | "copy_into" | "shared_dir", spec dict), checked before anything runs."""
    if staging is None:
        return None, {}
    if isinstance(staging, dict) and isinstance(staging.get("copy_into"), dict):
        spec = staging["copy_into"]
        if spec.get("engine") not in CONTAINER_ENGINES:
            raise InputError("staging copy_into.engine must be one of %s, got %r"
                             % (", ".join(CONTAINER_ENGINES), spec.get("engine")))
        _plain_word("staging copy_into.container", spec.get("container"))
        _absolute("staging copy_into.container_dir", spec.get("container_dir", "/tmp"))
        _owner("staging copy_into.owner", spec.get("owner"))
        return "copy_into", spec
    if isinstance(staging, dict) and "shared_dir" in staging:
        _absolute("staging shared_dir", staging.get("shared_dir"))
        _absolute("staging container_dir", staging.get("container_dir"))
        _owner("staging owner", staging.get("owner"))
        return "shared_dir", staging
    raise InputError("staging must be None, {'copy_into': {'engine': ..., 'container': ...}} "
                     "or {'shared_dir': ..., 'container_dir': ...}, got %r" % (staging,))


def _owner(name, value):
    if value and not (isinstance(value, str) and OWNER_PATTERN.match(value)):
        raise InputError("%s must be a user name or uid (a plain word), got %r"
                         % (name, value))


def _mktemp(session, directory):
    """A new empty 0600 file from mktemp (atomic, private from its creation)."""
    result = session.run(["mktemp", posixpath.join(directory, TEMP_NAME)], check=True)
    path = result.stdout.strip()
    if not path.startswith(directory.rstrip("/") + "/") or "\n" in path:
        raise CommandError("mktemp on %s printed an unexpected path: %r"
                           % (session.target.host, tail(path, 200)), host=session.target.host,
                           command=result.command)
    return path


def _argv(prefix, *args):
    if isinstance(prefix, str) or not prefix:
        raise InputError("the nova-manage command prefix must be a non-empty list, e.g. "
                         "['nova-manage'], got %r" % (prefix,))
    return list(prefix) + ["volume_attachment"] + list(args)


def _uuid(name, value):
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InputError("%s must be a UUID, got %r" % (name, value))


def _plain_word(name, value):
    if not isinstance(value, str) or not value or value.startswith("-") or "/" in value:
        raise InputError("%s must be a container name, got %r" % (name, value))


def _absolute(name, value):
    if not isinstance(value, str) or not value.startswith("/"):
        raise InputError("%s must be an absolute path, got %r" % (name, value))


def _headline(result):
    """The line that says what went wrong: nova-manage prints it on stdout, tracebacks aside."""
    for line in result.stdout.splitlines():
        text = line.strip()
        if text and not line[0].isspace() and not text.startswith("Traceback"):
            return text
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _error(cls, step, session, result, meaning, advice):
    return cls("nova-manage volume_attachment %s on %s exited %d (%s): %s. What to do: %s" % (
        step, session.target.host, result.exit_code, meaning, _headline(result), advice),
        step=step, host=session.target.host, command=result.command,
        exit_code=result.exit_code, meaning=meaning, advice=advice,
        stdout_tail=tail(result.stdout), stderr_tail=tail(result.stderr))
