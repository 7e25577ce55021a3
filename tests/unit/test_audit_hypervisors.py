"""adapters.hypervisors: every host's domains read with ONE command per host, a bounded number
of hosts at a time, an unreadable host recorded with its reason; and the listing's parser
(dvremedy.adapters.libvirt.all_domains_disks) on the outputs a host gives. The command runs for real
(sh, and the lab's virsh stand-in reading domain files written here), only not over SSH."""
import os
import re
import threading
import time

import pytest

from dvremedy.adapters import hypervisors, libvirt
from dvremedy.adapters.sshclient import CommandResult
from dvremedy.errors import SSHError
from dvremedy.model import disks
from testsupport.audit_fakes import VIRSH, LocalSession, write_domains

VOL_A = "0a0a0a0a-1111-4111-8111-000000000001"
VOL_B = "0b0b0b0b-2222-4222-8222-000000000002"


def disk(vol, dev, boot=False):
    return {"type": "block", "device": "disk", "target_dev": dev, "target_bus": "scsi",
            "serial": vol, "alias": "ua-" + vol, "boot": boot,
            "source": "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2010-10.org.openstack:"
                      "volume-%s-lun-0" % vol}


@pytest.fixture
def hosts(tmp_path):
    """Two hypervisors: cmp1 (a running domain with a half-detached disk, a stopped one),
    cmp2 (empty); cmp3 does not answer."""
    cmp1, cmp2 = str(tmp_path / "cmp1"), str(tmp_path / "cmp2")
    write_domains(cmp1, {
        "instance-00000001": ("11111111-0000-4000-8000-000000000001", "running",
                              [disk(VOL_A, "sda", True), disk(VOL_B, "sdb")],
                              [disk(VOL_A, "sda", True)]),
        "instance-00000002": ("11111111-0000-4000-8000-000000000002", "shut off", [],
                              [disk(VOL_B, "sda", True)])})
    os.makedirs(os.path.join(cmp2, "state", "domains"))
    log = []

    def open_session(host):
        if host == "cmp3":
            raise SSHError("SSH to cmp3 (root@[10.0.0.3]:22) failed: timed out after 10s",
                           host="cmp3", address="10.0.0.3", port=22)
        return LocalSession(host, {"cmp1": cmp1, "cmp2": cmp2}[host], log)
    return open_session, log


def test_every_host_is_read_with_one_command(hosts):
    open_session, log = hosts
    read = hypervisors.read_hosts(["cmp1", "cmp2", "cmp1"], open_session, VIRSH, 4)
    assert sorted(read) == ["cmp1", "cmp2"]
    assert sorted(h for h, _ in log) == ["cmp1", "cmp2"]          # one command per host
    assert all(argv[:2] == ["sh", "-c"] for _, argv in log)
    one = read["cmp1"]["domains"]
    assert sorted(one) == ["instance-00000001", "instance-00000002"]
    running = one["instance-00000001"]
    assert running["running"] is True
    assert [d["target"] for d in running["live"]] == ["sda", "sdb"]
    assert [d["target"] for d in running["config"]] == ["sda"]
    assert running["live"][1]["serial"] == VOL_B and running["live"][1]["alias"] == "ua-" + VOL_B
    assert one["instance-00000002"]["running"] is False
    assert read["cmp2"] == dict(read["cmp2"], reachable=True, domains={})
    assert disks.volume_ids_on_domain(running) == {VOL_A, VOL_B}


def test_an_unreachable_host_is_named_with_the_reason_and_the_others_are_read(hosts):
    open_session, _ = hosts
    heard = []
    read = hypervisors.read_hosts(["cmp1", "cmp3"], open_session, VIRSH, 2, progress=heard.append)
    assert read["cmp1"]["reachable"] is True
    assert read["cmp3"]["reachable"] is False
    assert read["cmp3"]["error"]["kind"] == "ssh" and read["cmp3"]["error"]["host"] == "cmp3"
    assert "timed out" in read["cmp3"]["error"]["message"]
    assert any(line.startswith("hypervisor cmp3: NOT READ: SSH to cmp3") for line in heard)


def test_a_virsh_that_fails_is_a_host_not_read(hosts, tmp_path):
    open_session, _ = hosts
    failing = tmp_path / "virsh"
    failing.write_text("#!/bin/sh\necho 'error: failed to connect to the hypervisor' >&2\n"
                       "exit 1\n")
    failing.chmod(0o755)
    read = hypervisors.read_hosts(["cmp1"], open_session, [str(failing)], 1)
    assert read["cmp1"]["reachable"] is False
    assert "failed to connect to the hypervisor" in read["cmp1"]["error"]["message"]


def test_no_more_hosts_than_the_concurrency_are_read_at_once(hosts):
    open_session, _ = hosts
    active, peak, lock = [0], [0], threading.Lock()

    class Slow(object):
        def __init__(self, host):
            self.inner = open_session("cmp2")

        def __enter__(self):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            return self.inner

        def __exit__(self, *exc):
            with lock:
                active[0] -= 1
    read = hypervisors.read_hosts(["h%d" % i for i in range(9)], Slow, VIRSH, 3)
    assert len(read) == 9 and all(r["reachable"] for r in read.values())
    assert peak[0] == 3


def test_no_hosts_no_reads():
    assert hypervisors.read_hosts([], None, VIRSH, 8) == {}


# -- the listing's parser ---------------------------------------------------------------------

XML = ("<domain type='kvm'%s><name>%s</name><devices>"
       "<disk type='block' device='disk'><source dev='/dev/x'/><target dev='sdb' bus='scsi'/>"
       "<serial>%s</serial><alias name='ua-%s'/></disk></devices></domain>")


class CannedSession(object):
    """Answers the one listing command with output built from the marker it carries."""

    def __init__(self, build):
        self.build = build
        self.target = type("Target", (), {"host": "cmp1"})()

    def run(self, argv, timeout=None):
        marker = re.search(r"(@@dvremedy-[0-9a-f]+)", argv[2]).group(1)
        return CommandResult(argv, 0, self.build(marker), "", 0.01)


def test_the_parser_reads_each_domain_and_flags_one_that_vanished_meanwhile():
    def output(m):
        return "\n".join([
            "%s domain web server 1" % m, XML % (" id='3'", "web server 1", VOL_A, VOL_A),
            "%s end live 0" % m, XML % ("", "web server 1", VOL_A, VOL_A),
            "%s end config 0" % m,
            "%s domain instance-9" % m,
            "%s end live 1" % m, "%s end config 1" % m, ""])
    domains = libvirt.all_domains_disks(CannedSession(output), ["virsh"])
    web = domains["web server 1"]
    assert web["running"] is True and web["live"][0]["serial"] == VOL_A
    assert web["config"][0]["alias"] == "ua-" + VOL_A
    gone = domains["instance-9"]
    assert gone["live"] is None and gone["config"] is None
    assert "exited 1" in gone["error"]


def test_a_shut_off_domain_has_no_id_and_is_not_running():
    def output(m):
        return "\n".join(["%s domain i-2" % m, XML % (" id='-1'", "i-2", VOL_B, VOL_B),
                          "%s end live 0" % m, XML % ("", "i-2", VOL_B, VOL_B),
                          "%s end config 0" % m])
    assert libvirt.all_domains_disks(CannedSession(output), ["virsh"])["i-2"]["running"] is False
