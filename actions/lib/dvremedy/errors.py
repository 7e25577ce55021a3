"""Typed errors that carry their evidence. Every error the pack raises on purpose is a
RemedyError: its message says what failed and what to do next, and `evidence()` gives the
machine-readable facts (command, exit code, stderr tail, HTTP status, request id) for reports.
Secrets never go into an error."""

TAIL_CHARS = 2000


def tail(text, limit=TAIL_CHARS):
    """The last `limit` characters of a command's output: where the reason usually is."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else "..." + text[-limit:]


class RemedyError(Exception):
    """Base of every deliberate failure. `step` names the remedy step that failed."""

    kind = "error"

    def __init__(self, message, step=None, **evidence):
        super().__init__(message)
        self.message = message
        self.step = step
        self.details = {k: v for k, v in evidence.items() if v is not None}

    def evidence(self):
        out = {"kind": self.kind, "message": self.message}
        if self.step:
            out["step"] = self.step
        out.update(self.details)
        return out


class InputError(RemedyError):
    """A parameter is malformed or names something that does not fit; nothing was changed."""
    kind = "bad_input"


class ConfigError(RemedyError):
    """The pack configuration is missing or wrong; names the key and how to reload it."""
    kind = "bad_config"


class NotFound(RemedyError):
    """A server, volume or attachment named by the caller does not exist."""
    kind = "not_found"


class CloudError(RemedyError):
    """An OpenStack API call failed: carries method, url, HTTP status and request id."""
    kind = "cloud_api"


class WaitTimeout(RemedyError):
    """A wait reached its deadline: carries what was awaited and the last state seen."""
    kind = "timeout"


class StateError(RemedyError):
    """The cloud reached a failure state while we waited, or is in a state we must not touch."""
    kind = "bad_state"


class SSHError(RemedyError):
    """Connecting to or authenticating with a host failed: carries host, address, port."""
    kind = "ssh"


class HostKeyError(SSHError):
    """The host's key is unknown or does not match known_hosts: never connected."""
    kind = "ssh_host_key"


class CommandError(RemedyError):
    """A remote command failed or timed out: carries host, command, exit code, stderr tail."""
    kind = "command"


class NovaManageError(CommandError):
    """nova-manage exited non-zero: carries its exit code, the documented meaning, and advice."""
    kind = "nova_manage"


class LibvirtError(CommandError):
    """virsh failed, or its output could not be understood."""
    kind = "libvirt"
