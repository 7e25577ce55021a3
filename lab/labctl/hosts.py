"""The lab's two SSH hosts: their PATH (nova-manage with that node's configuration, virsh on
the hypervisor), their sshd on its own loopback address, keys and known_hosts, and the iSCSI
initiator name os-brick reads on the hypervisor."""
import json
import os
import shutil

from . import configs, procs
from .settings import FILES

INITIATOR_FILE = "/etc/iscsi/initiatorname.iscsi"


def write_host_bins(s):
    """Each SSH host's PATH: nova-manage with that node's configuration; virsh on the hypervisor."""
    nova_conf = s.etc / "nova" / "nova.conf"
    roles = {"hypervisor": [nova_conf],
             "controller": [nova_conf, s.etc / "nova" / "controller.conf"]}
    for role, confs in roles.items():
        bindir = s.path("hosts", role, "bin")
        bindir.mkdir(parents=True, exist_ok=True)
        conf_args = " ".join("--config-file %s" % c for c in confs)
        _script(bindir / "nova-manage", """#!/bin/bash
# Lab host '%(role)s': the real nova-manage with this node's configuration.
before=" $(pgrep -f 'privsep-helper --config-file %(conf)s' | tr '\\n' ' ') "
%(bin)s %(conf_args)s "$@"
rc=$?
# os-brick's privsep daemon outlives nova-manage (parent 1): reap the ones this call started.
for pid in $(pgrep -f 'privsep-helper --config-file %(conf)s'); do
  [[ "$before" == *" $pid "* ]] || kill "$pid" 2>/dev/null
done
exit $rc
""" % {"role": role, "conf": nova_conf, "bin": s.bin("nova-manage"), "conf_args": conf_args})
    _script(s.path("hosts", "hypervisor", "bin", "virsh"), """#!/bin/bash
# Lab hypervisor: the stand-in for libvirt's virsh (see %(src)s).
LAB_DIR=%(lab)s exec %(py)s %(src)s "$@"
""" % {"lab": s.lab_dir, "py": s.bin("python"), "src": FILES / "virsh.py"})


def _script(path, text):
    path.write_text(text)
    os.chmod(str(path), 0o755)


def ensure_initiator(s):
    """os-brick reads this fixed path for the iSCSI initiator; create it only if absent."""
    record = s.path("created-outside.json")
    created = json.loads(record.read_text()) if record.exists() else []
    if not os.path.exists(INITIATOR_FILE):
        os.makedirs(os.path.dirname(INITIATOR_FILE), exist_ok=True)
        with open(INITIATOR_FILE, "w") as f:
            f.write("InitiatorName=iqn.2005-03.org.open-iscsi:%s\n" % s.compute_host)
        created.append(INITIATOR_FILE)
        print("  created %s (removed again by lab/down)" % INITIATOR_FILE)
    record.write_text(json.dumps(sorted(set(created))))


def start_sshd(s):
    ssh = s.path("ssh")
    ssh.mkdir(parents=True, exist_ok=True)
    key = ssh / "client_key"
    procs.run(s, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-client",
                  "-f", str(key)], "ssh-keygen (client)")
    shutil.copy(str(key) + ".pub", str(ssh / "authorized_keys"))
    if not os.path.isdir("/run/sshd"):  # sshd's privilege-separation directory
        os.makedirs("/run/sshd", mode=0o755)
        record = s.path("created-outside.json")
        created = json.loads(record.read_text()) if record.exists() else []
        record.write_text(json.dumps(sorted(set(created + ["/run/sshd"]))))
    known = []
    for role, address in (("hypervisor", s.hypervisor_ip), ("controller", s.controller_ip)):
        (ssh / role).mkdir(exist_ok=True)
        hostkey = ssh / role / "ssh_host_ed25519_key"
        procs.run(s, ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-" + role,
                      "-f", str(hostkey)], "ssh-keygen (%s host key)" % role)
        pub = (ssh / role / "ssh_host_ed25519_key.pub").read_text().split()
        known.append("[%s]:%d %s %s" % (address, s.ports["ssh"], pub[0], pub[1]))
        conf = configs.sshd_config(s, role, address)
        procs.start(s, "sshd-" + role, ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)])
    (ssh / "known_hosts").write_text("\n".join(known) + "\n")
    for role, address in (("hypervisor", s.hypervisor_ip), ("controller", s.controller_ip)):
        procs.wait_for("sshd (%s) on %s:%d" % (role, address, s.ports["ssh"]),
                       lambda a=address: procs.port_open(a, s.ports["ssh"]), 15,
                       interval=0.1, proc_name="sshd-" + role, settings=s)
