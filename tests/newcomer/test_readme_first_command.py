"""The newcomer's path: README command 1 in a fresh clone of the commit under test, in a
temporary directory with nothing carried over (no venvs, no lab state; pip's download cache is
the only thing shared), StackStorm's source given as a newcomer would give it (ST2_SOURCE, the
snapshot's absolute path). It must exit 0 and show the dry-run plan, the remedy's report and the
three views agreeing; its lab is taken down afterwards. One lab at a time (they share ports):
with another lab up this is skipped, except under CI=true, where that is a failure."""
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from testsupport.lab import REPO

DEMO_BUDGET_S = 600


def readme_commands():
    """The shell commands of the README's first two ```sh blocks."""
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = re.findall(r"```sh\n(.*?)```", f.read(), re.S)
    return [b.strip() for b in blocks[:2]]


# the lab's default ports (lab/labctl/settings.py), which the clone's lab will want
LAB_PORTS = [("127.0.0.1", 15000), ("127.0.0.1", 5692), ("127.0.0.2", 22022)]


def _lab_running():
    """This checkout's lab, or any other lab holding the ports (another checkout's, or CI's)."""
    if subprocess.run([os.path.join(REPO, "lab", "status")], capture_output=True,
                      timeout=120).returncode == 0:
        return True
    for address in LAB_PORTS:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(address) == 0:
                return True
    return False


def _clean_env(clone):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LAB_", "OS_", "VIRTUAL_ENV", "PYTHONPATH", "ST2LOCAL"))}
    env["PATH"] = ":".join(p for p in env.get("PATH", "/usr/bin:/bin").split(":")
                           if "/.lab/" not in p and "/.venvs/" not in p)
    vendor = os.path.normpath(os.path.join(REPO, "..", "shared", "vendor"))
    if "ST2_SOURCE" not in env and os.path.isdir(vendor):
        env["ST2_SOURCE"] = vendor  # a clone elsewhere has no ../shared: say where st2 is
    env["HOME"] = os.environ.get("HOME", "/root")  # pip's download cache
    return env


def test_readme_names_the_demo_and_the_test_command():
    assert readme_commands() == ["tools/demo", "tools/run-tests"]
    with open(os.path.join(REPO, ".ci", "run")) as f:
        assert "\ntools/run-tests\n" in f.read()


def test_readme_command_1_works_in_a_fresh_clone(tmp_path):
    if _lab_running():
        if os.environ.get("CI") == "true":
            pytest.fail("a lab is up: the newcomer check needs the lab's ports (lab/down first)")
        pytest.skip("a lab is up (lab/down to run the newcomer check: they share ports)")
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    clone = str(tmp_path / "dangling_volume")
    subprocess.run(["git", "clone", "-q", "--no-local", REPO, clone], check=True, timeout=300)
    subprocess.run(["git", "-C", clone, "checkout", "-q", head], check=True)
    command = readme_commands()[0]
    env = _clean_env(clone)
    began = time.monotonic()
    try:
        out = subprocess.run(["bash", "-c", command], cwd=clone, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=DEMO_BUDGET_S, stdin=subprocess.DEVNULL)
    finally:
        took = time.monotonic() - began
        subprocess.run([os.path.join(clone, "lab", "down")], env=env, capture_output=True,
                       timeout=300)
    log = out.stdout
    os.makedirs(os.path.join(REPO, ".venvs", "results"), exist_ok=True)
    with open(os.path.join(REPO, ".venvs", "results", "newcomer-demo.log"), "w") as f:
        f.write(log)
    print("README command 1 (%s) in a fresh clone: exit %d in %.0f s" % (
        command, out.returncode, took))
    assert out.returncode == 0, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    assert "is ignored: it is neither a file nor a directory" not in log  # no pip floods
    assert re.search(r"Dry run: volume [0-9a-f-]{36} on server [0-9a-f-]{36} is \w+; nothing "
                     r"changed\.", log), log[-4000:]
    assert re.search(r"A real run would run: .*refresh", log), log[-4000:]
    assert re.search(r"Remedied volume [0-9a-f-]{36} on server [0-9a-f-]{36}", log), log[-4000:]
    assert "now: consistent" in log, log[-4000:]
    assert "the three views agree: the volume is detached" in log, log[-4000:]
    shutil.rmtree(clone, ignore_errors=True)
