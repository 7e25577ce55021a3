"""The lab's configuration files: OpenStack services, RabbitMQ, sshd, clouds.yaml, lab.json."""
import json
import os
import secrets
import shutil

REGION = "RegionOne"


def passwords(s):
    """Per-lab random passwords, made once and kept (mode 0600) so clouds.yaml stays valid."""
    path = s.path("secrets.json")
    if path.exists():
        return json.loads(path.read_text())
    pw = {name: secrets.token_urlsafe(18)
          for name in ("admin", "demo", "nova", "placement", "cinder")}
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(pw, f)
    return pw


def sqlite_url(s, name):
    # SQLite for every database. Writers from several services meet on one file: wait for the
    # lock (30 s, not pysqlite's 5 s); WAL (set after db sync) lets readers not block writers.
    return "sqlite:///%s?timeout=30" % (s.data / ("%s.db" % name))


def _ini(sections):
    out = []
    for section, options in sections.items():
        out.append("[%s]" % section)
        out.extend("%s = %s" % (k, v) for k, v in options.items())
        out.append("")
    return "\n".join(out)


def _write(path, text, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(str(path), mode)


def _auth(s, user, pw, extra=None):
    opts = {
        "auth_type": "password", "auth_url": s.keystone_url, "project_domain_name": "Default",
        "user_domain_name": "Default", "project_name": "service", "username": user,
        "password": pw[user], "region_name": REGION,
    }
    opts.update(extra or {})
    return opts


def _authtoken(s, user, pw):
    opts = _auth(s, user, pw, {"www_authenticate_uri": s.keystone_url,
                               "service_token_roles_required": "true"})
    opts.pop("region_name")
    return opts


def write_all(s):
    pw = passwords(s)
    _keystone(s)
    _placement(s, pw)
    _nova(s, pw)
    _cinder(s, pw)
    _rabbit(s)
    _clouds(s, pw)
    return pw


def _keystone(s):
    d = s.etc / "keystone"
    _write(d / "keystone.conf", _ini({
        "DEFAULT": {"log_file": ""},
        "database": {"connection": sqlite_url(s, "keystone")},
        "fernet_tokens": {"key_repository": str(d / "fernet-keys")},
        "credential": {"key_repository": str(d / "credential-keys")},
        "token": {"provider": "fernet"},
    }), 0o600)


def _placement(s, pw):
    _write(s.etc / "placement" / "placement.conf", _ini({
        "placement_database": {"connection": sqlite_url(s, "placement")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken(s, "placement", pw),
    }), 0o600)


def _nova(s, pw):
    d = s.etc / "nova"
    nova_state = s.data / "nova"
    helper = "%s --config-file %s" % (s.bin("privsep-helper"), d / "nova.conf")
    conf = {
        "DEFAULT": {
            "host": s.compute_host, "my_ip": s.ip, "state_path": str(nova_state),
            "instances_path": str(nova_state / "instances"),
            "compute_driver": "labdriver.LabDriver", "transport_url": s.transport_url,
            "heal_instance_info_cache_interval": "-1",
            "debug": "true",  # the lab is for finding out what happened
        },
        "api": {"auth_strategy": "keystone"},
        "wsgi": {"api_paste_config": str(d / "api-paste.ini")},
        "api_database": {"connection": sqlite_url(s, "nova_api")},
        "database": {"connection": sqlite_url(s, "nova")},
        "keystone_authtoken": _authtoken(s, "nova", pw),
        "placement": _auth(s, "nova", pw),
        "neutron": _auth(s, "nova", pw),
        "cinder": _auth(s, "nova", pw, {"catalog_info": "volumev3::publicURL",
                                        "os_region_name": REGION}),
        "service_user": _auth(s, "nova", pw, {"send_service_user_token": "true"}),
        "glance": {"endpoint_override": "http://%s:%d" % (s.ip, s.glance_port)},
        "notifications": {"notification_format": "both",
                          "notify_on_state_change": "vm_and_task_state"},
        "oslo_messaging_notifications": {"driver": "messagingv2"},
        "scheduler": {"discover_hosts_in_cells_interval": "10", "workers": "1"},
        "conductor": {"workers": "1"},
        "privsep_osbrick": {"helper_command": helper},
        "privsep": {"helper_command": helper},
        "oslo_concurrency": {"lock_path": str(nova_state / "locks")},
        "quota": {"instances": "-1", "cores": "-1", "ram": "-1", "metadata_items": "-1",
                  "key_pairs": "-1", "server_groups": "-1", "server_group_members": "-1"},
        "vnc": {"enabled": "false"},
    }
    _write(d / "nova.conf", _ini(conf), 0o600)
    # A second node's identity: get_connector there names the wrong host (refresh rc 7).
    _write(d / "controller.conf", _ini({"DEFAULT": {"host": s.controller_host}}))
    shutil.copy(str(s.venv / "etc" / "nova" / "api-paste.ini"), str(d / "api-paste.ini"))


def _cinder(s, pw):
    d = s.etc / "cinder"
    cinder_state = s.data / "cinder"
    _write(d / "cinder.conf", _ini({
        "DEFAULT": {
            "host": "lab-cinder", "my_ip": s.ip, "state_path": str(cinder_state),
            "transport_url": s.transport_url, "auth_strategy": "keystone",
            "enabled_backends": "fake", "default_volume_type": "__DEFAULT__",
            "api_paste_config": str(s.venv / "etc" / "cinder" / "api-paste.ini"),
            # Short RPC timeout: "cinder-volume down during a detach" fails in ~25 s, not ~5 min.
            "rpc_response_timeout": "5",
            "quota_volumes": "-1", "quota_gigabytes": "-1", "quota_snapshots": "-1",
            "quota_backups": "-1", "quota_backup_gigabytes": "-1",
        },
        "database": {"connection": sqlite_url(s, "cinder")},
        "keystone_authtoken": _authtoken(s, "cinder", pw),
        "nova": _auth(s, "cinder", pw, {"interface": "public"}),
        "oslo_concurrency": {"lock_path": str(cinder_state / "locks")},
        "coordination": {"backend_url": "file://%s" % (cinder_state / "coordination")},
        "fake": {"volume_driver": "cinder.tests.fake_driver.FakeLoggingVolumeDriver",
                 "volume_backend_name": "fake"},
    }), 0o600)


def rabbit_env(s):
    r = s.path("rabbit")
    dist_args = "-kernel inet_dist_use_interface {127,0,0,1}"
    return {
        "HOME": str(r),
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": s.ip,
        "RABBITMQ_NODE_PORT": str(s.ports["amqp"]),
        "RABBITMQ_DIST_PORT": str(s.ports["erlang-dist"]),
        "ERL_EPMD_ADDRESS": s.ip,
        "ERL_EPMD_PORT": str(s.ports["epmd"]),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": dist_args,
        "RABBITMQ_CTL_ERL_ARGS": dist_args,
        "RABBITMQ_CONFIG_FILE": str(r / "etc" / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(r / "etc" / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "etc" / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(r / "mnesia"),
        "RABBITMQ_LOG_BASE": str(r / "log"),
        "RABBITMQ_PID_FILE": str(r / "rabbit.pid"),
    }


def _rabbit(s):
    r = s.path("rabbit") / "etc"
    _write(r / "rabbitmq.conf", "listeners.tcp.default = %s:%d\n" % (s.ip, s.ports["amqp"]))
    _write(r / "rabbitmq-env.conf", "")
    _write(r / "enabled_plugins", "[].\n")


def sshd_config(s, role, address):
    ssh = s.path("ssh")
    path_dirs = "%s:/usr/local/bin:/usr/bin:/bin" % (s.path("hosts", role, "bin"))
    text = "\n".join([
        "ListenAddress %s:%d" % (address, s.ports["ssh"]),
        "HostKey %s" % (ssh / role / "ssh_host_ed25519_key"),
        "PidFile %s" % (s.run / ("sshd-%s.sshd.pid" % role)),
        "AuthorizedKeysFile %s" % (ssh / "authorized_keys"),
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "PermitRootLogin prohibit-password", "StrictModes no",
        "Subsystem sftp internal-sftp",  # scp and paramiko SFTP uploads
        # Sessions look like a login on that host: its own PATH (nova-manage, virsh) and the
        # lab's marker so `down` can reap what they leave behind (privsep helpers).
        # SHLVL=1: bash then skips root's ~/.bashrc (pyenv init: +0.4 s per command).
        "SetEnv PATH=%s LAB_OWNER=%s LAB_DIR=%s LAB_ROLE=%s SHLVL=1" % (
            path_dirs, s.lab_dir, s.lab_dir, role),
        "",
    ])
    _write(ssh / ("sshd_%s.conf" % role), text)
    return ssh / ("sshd_%s.conf" % role)


def _clouds(s, pw):
    def cloud(user, project):
        return {"auth": {"auth_url": s.keystone_url, "username": user, "password": pw[user],
                         "project_name": project, "user_domain_name": "Default",
                         "project_domain_name": "Default"},
                "region_name": REGION, "interface": "public", "identity_api_version": 3}
    clouds = {"clouds": {"lab-admin": cloud("admin", "admin"), "lab-demo": cloud("demo", "demo")}}
    # JSON is valid YAML: no YAML library needed outside the venv.
    _write(s.path("clouds.yaml"), json.dumps(clouds, indent=2) + "\n", 0o600)


def write_lab_json(s):
    """Where tests and the demo find everything they need to reach the lab."""
    info = {
        "lab_dir": str(s.lab_dir),
        "venv": str(s.venv),
        "clouds_yaml": str(s.path("clouds.yaml")),
        "clouds": {"admin": "lab-admin", "member": "lab-demo"},
        "region": REGION,
        "amqp_url": "amqp://guest:guest@%s:%d//" % (s.ip, s.ports["amqp"]),
        "nova_exchange": "nova",
        "compute_host": s.compute_host,
        "controller_host": s.controller_host,
        "ssh": {
            "user": "root",
            "port": s.ports["ssh"],
            "key_file": str(s.path("ssh", "client_key")),
            "known_hosts_file": str(s.path("ssh", "known_hosts")),
            # Nova's compute host name -> the address the pack is told to use for it.
            "hosts": {s.compute_host: s.hypervisor_ip, s.controller_host: s.controller_ip},
        },
        "roles": {"hypervisor": s.compute_host, "controller": s.controller_host},
        "ports": s.ports,
        "state_dir": str(s.state),
    }
    _write(s.path("lab.json"), json.dumps(info, indent=2) + "\n")
    # The pack's own config for this cloud (what an operator writes to
    # /opt/stackstorm/configs/dangling_volume.yaml): the demo and the tests use it.
    pack_config = {
        "cloud": "lab-admin", "clouds_yaml": info["clouds_yaml"],
        "ssh": {"user": "root", "key_file": info["ssh"]["key_file"],
                "known_hosts_file": info["ssh"]["known_hosts_file"], "port": s.ports["ssh"],
                "connect_timeout": 10, "command_timeout": 120},
        "hosts": {"address_map": info["ssh"]["hosts"]},
        "controller": {"hosts": [s.controller_host]},
    }
    _write(s.path("dangling_volume.yaml"), json.dumps(pack_config, indent=2) + "\n")
    return info
