"""Where the lab lives and which ports it uses; every value can be overridden by environment."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "lab" / "files"


def _env(name, default):
    return os.environ.get(name, default)


class Settings:
    """Everything the lab needs to know, read once from the environment."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        get = env.get
        self.lab_dir = Path(get("LAB_DIR", str(REPO / ".lab"))).resolve()
        self.venv = self.lab_dir / "venv"
        self.ip = "127.0.0.1"
        self.hypervisor_ip = get("LAB_HYPERVISOR_IP", "127.0.0.2")
        self.controller_ip = get("LAB_CONTROLLER_IP", "127.0.0.3")
        self.compute_host = "lab-compute"
        self.controller_host = "lab-controller"
        # name -> (environment variable, default); every listener is on loopback only
        self.port_settings = {
            "keystone": ("LAB_PORT_KEYSTONE", 15000),
            "placement": ("LAB_PORT_PLACEMENT", 18778),
            "nova-api": ("LAB_PORT_NOVA", 18774),
            "cinder-api": ("LAB_PORT_CINDER", 18776),
            "neutron-standin": ("LAB_PORT_NEUTRON", 19696),
            "amqp": ("LAB_PORT_AMQP", 5692),
            "epmd": ("LAB_PORT_EPMD", 4371),
            "erlang-dist": ("LAB_PORT_ERLANG_DIST", 25692),
            "ssh": ("LAB_PORT_SSH", 22022),
        }
        self.ports = {name: int(get(var, str(default)))
                      for name, (var, default) in self.port_settings.items()}
        # Nova builds an image URL even for boot-from-volume; nothing listens here.
        self.glance_port = int(get("LAB_PORT_GLANCE", "19292"))

    # paths -----------------------------------------------------------------
    def path(self, *parts):
        return self.lab_dir.joinpath(*parts)

    @property
    def etc(self):
        return self.path("etc")

    @property
    def data(self):
        return self.path("data")

    @property
    def run(self):
        return self.path("run")

    @property
    def logs(self):
        return self.path("logs")

    @property
    def state(self):
        return self.path("state")

    def bin(self, name):
        return str(self.venv / "bin" / name)

    def url(self, service, suffix=""):
        return "http://%s:%d%s" % (self.ip, self.ports[service], suffix)

    @property
    def keystone_url(self):
        return self.url("keystone", "/v3")

    @property
    def transport_url(self):
        return "rabbit://guest:guest@%s:%d/" % (self.ip, self.ports["amqp"])

    def listeners(self):
        """(address, port, what, setting) for every socket the lab will listen on."""
        out = []
        for name, (var, _default) in self.port_settings.items():
            if name == "ssh":
                out.append((self.hypervisor_ip, self.ports[name], "sshd (hypervisor)", var))
                out.append((self.controller_ip, self.ports[name], "sshd (controller)", var))
            else:
                out.append((self.ip, self.ports[name], name, var))
        return out
