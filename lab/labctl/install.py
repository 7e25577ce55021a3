"""Install what the lab needs and is missing: Debian packages and the OpenStack venv."""
import hashlib
import os
import shutil
import subprocess
import sys
import time

from .procs import LabError
from .settings import FILES, REPO

APT_PACKAGES = {"rabbitmq-server": "/usr/lib/rabbitmq/bin/rabbitmq-server",
                "openssh-server": "/usr/sbin/sshd"}
POLICY_RC = "/usr/sbin/policy-rc.d"
REQUIREMENTS = REPO / "lab" / "requirements-lab.txt"


def ensure_apt(log):
    missing = [pkg for pkg, probe in APT_PACKAGES.items() if not os.path.exists(probe)]
    if not missing:
        log("  Debian packages present: %s" % ", ".join(APT_PACKAGES))
        return
    if os.geteuid() != 0:
        raise LabError("missing Debian packages %s; run as root or install them: "
                       "apt-get install -y %s" % (missing, " ".join(missing)))
    t0 = time.monotonic()
    log("  apt-get install %s (services are not started by the packages)" % " ".join(missing))
    saved = None
    if os.path.exists(POLICY_RC):  # not owned by any package: keep the original's text
        with open(POLICY_RC, "rb") as f:
            saved = f.read()
    try:
        with open(POLICY_RC, "w") as f:
            f.write("#!/bin/sh\n# written by the dangling_volume lab during apt-get install\n"
                    "exit 101\n")
        os.chmod(POLICY_RC, 0o755)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing):
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise LabError("%s failed (exit %d):\n%s" % (
                    " ".join(argv), proc.returncode, (proc.stdout + proc.stderr)[-2000:]))
    finally:
        if saved is None:
            os.unlink(POLICY_RC)
        else:
            with open(POLICY_RC, "wb") as f:
                f.write(saved)
    log("  apt-get done in %.1f s" % (time.monotonic() - t0))


def _stamp():
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_venv(s, log):
    stamp_file = s.venv / ".lab-requirements.sha256"
    if stamp_file.exists() and stamp_file.read_text().strip() == _stamp():
        log("  venv present: %s" % s.venv)
    else:
        python = _python311()
        t0 = time.monotonic()
        log("  creating venv %s with %s (OpenStack from PyPI, about a minute)" % (s.venv, python))
        if s.venv.exists():
            shutil.rmtree(str(s.venv))
        _check([python, "-m", "venv", str(s.venv)], "python -m venv")
        _check([s.bin("pip"), "install", "-q", "--disable-pip-version-check",
                "-r", str(REQUIREMENTS)], "pip install -r %s" % REQUIREMENTS, timeout=1800)
        stamp_file.write_text(_stamp() + "\n")
        log("  venv ready in %.1f s" % (time.monotonic() - t0))
    _link_driver(s)


def _link_driver(s):
    """Lab modules the venv's Pythons load from the repo (symlinks, so edits take effect)."""
    site = next((s.venv / "lib").glob("python3*/site-packages"))
    # nova 34 imports 'nova.virt.' + compute_driver: the lab driver must live in that package.
    _symlink(site / "nova" / "virt" / "labdriver.py", FILES / "labdriver.py")
    _symlink(site / "labdomains.py", FILES / "labdomains.py")  # labdriver's domain files
    _symlink(site / "lab_sqlite_immediate.py", FILES / "lab_sqlite_immediate.py")
    (site / "lab_sqlite_immediate.pth").write_text("import lab_sqlite_immediate\n")


def _symlink(target, source):
    if target.is_symlink() and os.readlink(str(target)) == str(source):
        return
    if target.exists() or target.is_symlink():
        target.unlink()
    target.symlink_to(source)


def _python311():
    """The base Python 3.11 by absolute path: DV_PYTHON311, else this interpreter's own base
    installation (never a venv's python found on PATH: lab/env puts the lab's venv first)."""
    candidates = [os.environ.get("DV_PYTHON311"),
                  os.path.join(sys.base_prefix, "bin", "python3.11"),
                  os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3.11")]
    for candidate in candidates:
        if candidate and os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise LabError("the lab needs Python 3.11 (nova 34 requires it): set DV_PYTHON311 to its "
                   "absolute path (tried %s)" % ", ".join(c for c in candidates if c))


def _check(argv, what, timeout=600):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LabError("%s failed (exit %d):\n%s" % (what, proc.returncode,
                                                    (proc.stdout + proc.stderr)[-3000:]))
