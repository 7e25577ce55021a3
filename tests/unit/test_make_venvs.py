"""tools/make-venvs refuses what it cannot build from, with a message that names the fix, and
changes nothing then: a wrong or relative interpreter, a missing StackStorm source. Run on a copy
of the script in a scratch repository, so the real .venvs/ is never touched."""
import os
import shutil
import subprocess
import sys

import pytest

from testsupport.lab import REPO


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "tools").mkdir()
    shutil.copy(os.path.join(REPO, "tools", "make-venvs"), str(tmp_path / "tools"))
    src = tmp_path / ".venvs" / "st2-src"
    src.mkdir(parents=True)
    (src / ".stamp").write_text("an earlier source\n")
    (src / "kept").write_text("unpacked earlier\n")
    return tmp_path


def run(scratch, *args, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DV_PYTHON", "ST2_"))}
    environ.update(env)
    return subprocess.run(["bash", str(scratch / "tools" / "make-venvs")] + list(args),
                          capture_output=True, text=True, env=environ, timeout=60)


def test_a_missing_source_is_refused_and_the_unpacked_tree_kept(scratch):
    out = run(scratch, "py38", ST2_SOURCE=str(scratch / "nowhere"))
    assert out.returncode == 1
    assert "ST2_SOURCE=%s is not a directory" % (scratch / "nowhere") in out.stderr
    assert (scratch / ".venvs" / "st2-src" / "kept").exists()


def test_a_source_without_the_snapshots_is_refused(scratch):
    (scratch / "empty").mkdir()
    out = run(scratch, "py38", ST2_SOURCE=str(scratch / "empty"))
    assert out.returncode == 1 and "lacks st2-3.9.0-src.tar.gz" in out.stderr
    assert (scratch / ".venvs" / "st2-src" / "kept").exists()


@pytest.mark.parametrize("name,wrong,message", [
    ("DV_PYTHON38", "python3.8", "give the interpreter as an absolute path"),
    ("DV_PYTHON38", sys.executable if sys.version_info[:2] != (3, 8) else None, "not 3.8"),
    ("DV_PYTHON311", sys.executable if sys.version_info[:2] != (3, 11) else None, "not 3.11"),
    ("DV_PYTHON311", "/nonexistent/python3.11", "no Python 3.11 at /nonexistent/python3.11"),
])
def test_an_interpreter_is_taken_by_absolute_path_and_its_version_checked(scratch, name, wrong,
                                                                          message):
    if wrong is None:
        pytest.skip("this test's own Python is the version the case needs to be wrong")
    vendor = os.path.normpath(os.path.join(REPO, "..", "shared", "vendor"))
    if not os.path.isdir(vendor):
        pytest.skip("no StackStorm snapshots beside the repository")
    version = name.replace("DV_PYTHON", "py")
    out = run(scratch, version, ST2_SOURCE=vendor, **{name: wrong})
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert not (scratch / ".venvs" / ("st2-" + version)).exists()
