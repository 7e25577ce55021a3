"""The pack configuration, validated once into plain values. Defaults come from the pack's own
config.schema.yaml (one source of truth); st2 has applied them already, tests and the local
runner may not have."""
import os
import re
import uuid

from dvremedy.errors import ConfigError, InputError

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                           "config.schema.yaml")
# a user name or uid for chown: a plain word, never an option or a path
OWNER_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
RELOAD = ("set it in /opt/stackstorm/configs/dangling_volume.yaml, then run "
          "`st2ctl reload --register-configs`")


def _schema_defaults():
    import yaml  # shipped with st2
    with open(SCHEMA_PATH) as f:
        schema = yaml.safe_load(f)

    def default_of(node):
        if node.get("type") == "object" and "properties" in node:
            base = dict(node.get("default") or {})
            for key, sub in node["properties"].items():
                base.setdefault(key, default_of(sub))
            return base
        return node.get("default")
    return {key: default_of(node) for key, node in schema.items()}


def _merge(defaults, given):
    out = dict(defaults)
    for key, value in (given or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class Settings:
    """Typed view of the pack config. Raises ConfigError naming the key that is wrong."""

    def __init__(self, config=None):
        raw = _merge(_schema_defaults(), dict(config or {}))
        self.raw = raw
        self.cloud = raw["cloud"] or ""
        self.clouds_yaml = raw["clouds_yaml"] or ""
        self.api_timeout = _positive(raw, "api_timeout")
        ssh = raw["ssh"]
        self.ssh_user = ssh["user"]
        self.ssh_key_file = ssh["key_file"]
        self.ssh_known_hosts = ssh["known_hosts_file"]
        self.ssh_port = _port(ssh, "port", "ssh.")
        self.ssh_jump_host = ssh["jump_host"] or ""
        self.ssh_jump_port = _port(ssh, "jump_port", "ssh.")
        self.ssh_connect_timeout = _positive(ssh, "connect_timeout", "ssh.")
        self.ssh_command_timeout = _positive(ssh, "command_timeout", "ssh.")
        self.ssh_connect_retries = _non_negative_int(ssh, "connect_retries", "ssh.")
        self.address_map = dict(raw["hosts"]["address_map"] or {})
        self.address_template = raw["hosts"]["address_template"] or "{host}"
        ctl = raw["controller"]
        self.controller_hosts = list(ctl["hosts"] or [])
        self.staging = ctl["staging"]
        self.container_engine = ctl["container_engine"]
        self.container = ctl["container"]
        self.shared_dir = ctl["shared_dir"]
        self.container_dir = ctl["container_dir"]
        self.controller_owner = _owner(ctl.get("owner"))
        cmds = raw["commands"]
        self.hypervisor_nova_manage = _words(cmds, "hypervisor_nova_manage")
        self.controller_nova_manage = _words(cmds, "controller_nova_manage")
        self.virsh = _words(cmds, "virsh")
        waits = raw["waits"]
        self.wait_power = _positive(waits, "power", "waits.")
        self.wait_detach = _positive(waits, "detach", "waits.")
        self.wait_volume_state = _positive(waits, "volume_state", "waits.")
        self.wait_refresh = _positive(waits, "refresh", "waits.")
        auto = raw["automatic"]
        self.max_automatic_per_hour = auto["max_per_hour"]
        if (not isinstance(self.max_automatic_per_hour, int) or
                isinstance(self.max_automatic_per_hour, bool) or self.max_automatic_per_hour < 0):
            raise ConfigError("automatic.max_per_hour must be an integer >= 0, not %r: %s"
                              % (self.max_automatic_per_hour, RELOAD))
        self.automatic_pre_approved = bool(auto["pre_approved"])
        self.approval_route = auto["approval_route"] or "dangling_volume"
        self.approval_ttl = _positive(auto, "approval_ttl", "automatic.")
        audit = raw["audit"]
        self.audit_page_size = _positive_int(audit, "page_size", "audit.")
        self.audit_hypervisor_concurrency = _positive_int(audit, "hypervisor_concurrency",
                                                          "audit.")
        self.audit_stuck_after = _non_negative(audit, "stuck_after", "audit.")
        self.audit_report_dir = audit["report_dir"] or ""
        if self.audit_report_dir and not os.path.isabs(os.path.expanduser(
                self.audit_report_dir)):
            raise ConfigError("audit.report_dir must be an absolute path (the place every "
                              "audit report goes under), not %r: %s"
                              % (self.audit_report_dir, RELOAD))
        self.audit_sweep_concurrency = _positive_int(audit, "sweep_concurrency", "audit.")
        if self.staging == "shared_dir" and not (self.shared_dir and self.container_dir):
            raise ConfigError("controller.staging is shared_dir but controller.shared_dir or "
                              "controller.container_dir is empty: " + RELOAD)

    def staging_spec(self):
        """The `staging=` argument of novamanage.refresh for this config: None when
        nova-manage runs on the controller itself, else how the connector file reaches its
        container (with controller.owner, if set, as the file's owner)."""
        owner = {"owner": self.controller_owner} if self.controller_owner else {}
        if self.staging == "copy_into":
            spec = {"engine": self.container_engine, "container": self.container}
            if self.container_dir:
                spec["container_dir"] = self.container_dir
            spec.update(owner)
            return {"copy_into": spec}
        if self.staging == "shared_dir":
            return dict({"shared_dir": self.shared_dir, "container_dir": self.container_dir},
                        **owner)
        return None

    def cloud_name(self, override=None):
        name = override or self.cloud
        if not name:
            raise ConfigError("no cloud given: pass cloud=<clouds.yaml entry> or set `cloud` "
                              "in the pack config; " + RELOAD)
        return name

    def address_for(self, host):
        """The SSH address of a Nova host name: the explicit map, else the template."""
        if host in self.address_map:
            return self.address_map[host]
        try:
            return self.address_template.format(host=host)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError("hosts.address_template %r cannot be filled (%s): it may use "
                              "only {host}; %s" % (self.address_template, exc, RELOAD))

    def require_ssh_key(self):
        """What any SSH connection needs (reading a hypervisor, too)."""
        if not self.ssh_key_file:
            raise ConfigError("ssh.key_file is empty: " + RELOAD)

    def require_ssh(self):
        """What the remedy needs: the key, and a controller for refresh."""
        self.require_ssh_key()
        if not self.controller_hosts:
            raise ConfigError("controller.hosts is empty: name the host(s) where "
                              "`nova-manage volume_attachment refresh` runs; " + RELOAD)


def _positive(section, key, prefix=""):
    value = section.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError("%s%s must be a positive number, not %r: %s" % (
            prefix, key, value, RELOAD))
    return value


def _positive_int(section, key, prefix=""):
    value = section.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError("%s%s must be a positive whole number, not %r: %s" % (
            prefix, key, value, RELOAD))
    return value


def _non_negative(section, key, prefix=""):
    value = section.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError("%s%s must be a number of 0 or more, not %r: %s" % (
            prefix, key, value, RELOAD))
    return value


def _port(section, key, prefix=""):
    value = section.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ConfigError("%s%s must be a TCP port number (1-65535), not %r: %s" % (
            prefix, key, value, RELOAD))
    return value


def _non_negative_int(section, key, prefix=""):
    value = section.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError("%s%s must be a whole number of 0 or more, not %r: %s" % (
            prefix, key, value, RELOAD))
    return value


def _owner(value):
    """controller.owner: "" or a user name / uid for chown (a plain word, never an option)."""
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not OWNER_PATTERN.match(value):
        raise ConfigError("controller.owner must be a user name or uid (letters, digits, "
                          "_ . -; not starting with -), not %r: %s" % (value, RELOAD))
    return value


def _words(section, key):
    value = section.get(key)
    if not isinstance(value, list) or not value or not all(
            isinstance(w, str) and w for w in value):
        raise ConfigError("commands.%s must be a non-empty list of words, not %r: %s" % (
            key, value, RELOAD))
    return list(value)


_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")


def require_uuid(name, value):
    """A parameter that names a server or volume: a UUID, returned in canonical form.
    Anything else (shell metacharacters included) is refused before any call is made."""
    if not isinstance(value, str) or not _UUID.match(value.strip()):
        raise InputError("%s must be a UUID like 03549f61-9cee-4bdf-b5e9-39c18d815a06, not %r"
                         % (name, value if isinstance(value, str) else type(value).__name__))
    return str(uuid.UUID(value.strip()))
