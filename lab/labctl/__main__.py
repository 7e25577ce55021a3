"""The lab's single entry point: python3 -m labctl up|down|status|env (see lab/README.md)."""
import sys

from .procs import LabError
from .settings import Settings


def main(argv):
    if len(argv) < 1 or argv[0] not in ("up", "down", "status", "env", "install"):
        print("usage: lab/{up,down,status,env,install}", file=sys.stderr)
        return 2
    s = Settings()
    try:
        if argv[0] == "up":
            from .up import up
            return up(s)
        if argv[0] == "down":
            from .down import down
            return down(s)
        if argv[0] == "install":  # the Debian packages only (sshd, RabbitMQ) for unit tests
            from .install import ensure_apt
            ensure_apt(print)
            return 0
        if argv[0] == "status":
            from .status import status
            return status(s)
        print("export LAB_DIR=%s" % s.lab_dir)
        print("export OS_CLIENT_CONFIG_FILE=%s" % s.path("clouds.yaml"))
        print("export OS_CLOUD=lab-admin")
        print("export PATH=%s:$PATH" % (s.venv / "bin"))
        return 0
    except LabError as exc:
        print("lab %s failed: %s" % (argv[0], exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
