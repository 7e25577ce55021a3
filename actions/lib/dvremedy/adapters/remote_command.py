"""The command line a host runs: an argv list quoted word by word (callers never build shell
strings), and bounded on the host by coreutils `timeout`, inside the container when the command
is a `docker|podman exec` or `kubectl exec`."""
import posixpath
import shlex

from dvremedy.errors import InputError

KILL_AFTER = 5        # seconds the host's `timeout` waits after SIGTERM before SIGKILL
CONTAINER_CLIS = ("docker", "podman")
# `docker|podman exec` options that take a value as the next word
EXEC_VALUE_OPTIONS = ("-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir",
                      "--detach-keys", "--preserve-fds")


def quote_argv(argv):
    """One shell command line from an argv list: each element quoted, never spliced raw."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise InputError("a remote command must be a non-empty list of arguments, got %r"
                         % (argv,))
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def bound_on_host(argv, seconds):
    """argv run under coreutils `timeout` on the host, so a command we stop waiting for does
    not keep running there (sshd will not signal a root login's command). In a container
    (`docker|podman exec [options] <container> ...`, `kubectl exec ... -- ...`) the bound goes
    inside, right after the container: killing the exec client leaves the process running."""
    at = _command_start(list(argv))
    wrapper = ["timeout", "--kill-after=%ds" % KILL_AFTER, "%gs" % max(seconds, 0.1)]
    return list(argv[:at]) + wrapper + list(argv[at:])


def _command_start(words):
    """Index of the first word of the command that runs inside the container (0 if none)."""
    for i, word in enumerate(words):
        name = posixpath.basename(word)
        if name in CONTAINER_CLIS and words[i + 1:i + 2] == ["exec"]:
            j = i + 2
            while j < len(words) and words[j].startswith("-"):
                j += 2 if words[j] in EXEC_VALUE_OPTIONS else 1
            return j + 1 if j < len(words) else 0     # after the container name
        if name == "kubectl" and "--" in words[i:]:
            return words.index("--", i) + 1
    return 0
