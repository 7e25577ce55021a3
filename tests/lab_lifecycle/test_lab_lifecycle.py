"""The lab's own life cycle (a pytest run of its own, after the lab tier: it restarts the lab).
`lab/up` refuses a busy port and names the setting; `lab/down` leaves no port of the lab open
and no process of it running; a second `lab/up` after `down` works."""
import os
import socket
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _lab(cmd, env=None, timeout=600):
    return subprocess.run([os.path.join(REPO, "lab", cmd)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_refuses_a_port_in_use_and_names_the_setting(tmp_path):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    others = {var: str(_free_port()) for var in (
        "LAB_PORT_KEYSTONE", "LAB_PORT_PLACEMENT", "LAB_PORT_NOVA", "LAB_PORT_CINDER",
        "LAB_PORT_NEUTRON", "LAB_PORT_EPMD", "LAB_PORT_ERLANG_DIST", "LAB_PORT_SSH")}
    env = dict(os.environ, LAB_DIR=str(tmp_path / "lab"), LAB_PORT_AMQP=str(port), **others)
    try:
        out = _lab("up", env=env, timeout=60)
    finally:
        squatter.close()
    assert out.returncode != 0
    assert "127.0.0.1:%d (amqp) is in use; set LAB_PORT_AMQP=" % port in out.stderr
    assert not (tmp_path / "lab" / "venv").exists()  # refused before installing anything


def _listening():
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def test_down_leaves_nothing_and_up_again_works(lab):
    ours = {"%s:%d" % (addr, port) for addr, port in
            [("127.0.0.1", p) for k, p in lab["ports"].items() if k != "ssh"] +
            [(a, lab["ssh"]["port"]) for a in lab["ssh"]["hosts"].values()]}
    assert ours & _listening()
    down = _lab("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not ours & _listening()
    assert not [line for line in _listening() if line.endswith(":%d" % lab["ports"]["epmd"])]
    marker = "LAB_OWNER=%s" % lab["lab_dir"]
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                if marker.encode() in f.read().split(b"\0"):
                    left.append(pid)
        except OSError:
            pass
    assert left == [] or left == [str(os.getpid())]
    up = _lab("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "READY" in up.stdout
    assert _lab("status").returncode == 0
