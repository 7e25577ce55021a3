"""adapters.libvirt: domain XML and domblklist parsing from our own fixtures, matching disks to
volumes, and the virsh calls over a real sshd against the lab's virsh stand-in
(lab/files/virsh.py, reading domain JSON files built here)."""
import json
import os
import sys

import pytest

from dvremedy.adapters import libvirt
from dvremedy.adapters.sshclient import SSHSession, SSHTarget
from dvremedy.errors import InputError, LibvirtError, NotFound
from dvremedy.model import disks

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(TESTS_DIR, "fixtures", "libvirt")
VIRSH_STANDIN = os.path.join(os.path.dirname(TESTS_DIR), "lab", "files", "virsh.py")

ISCSI_VOL = "8d3c52b0-6a4f-4f1e-9c3a-7b2e91d0aa15"
RBD_VOL = "c41e7f09-5d2a-4b3c-8e6f-0a9b1c2d3e4f"          # serial, no alias
RBD_BARE_VOL = "e5f6a7b8-1c2d-4e3f-9a0b-c1d2e3f4a5b6"     # neither serial nor alias
NFS_VOL = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


# -- parsing ----------------------------------------------------------------------------------

def test_domain_xml_gives_every_disk_with_its_facts():
    disks = libvirt.parse_domain_xml(fixture_text("instance-iscsi-running.xml"))
    assert [d["target"] for d in disks] == ["vda", "sdb", "sda", "sdc"]
    root, volume, config_drive, empty_cdrom = disks
    assert root == {"type": "file", "device": "disk", "target": "vda", "bus": "virtio",
                    "source": "/var/lib/nova/instances/5f0c8a57-1d3e-4c2a-9b7e-2d6f1a0c3b41/disk",
                    "serial": None, "alias": "virtio-disk0"}
    assert volume["type"] == "block" and volume["bus"] == "scsi"
    assert volume["source"].startswith("/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-")
    assert volume["serial"] == ISCSI_VOL and volume["alias"] == "ua-" + ISCSI_VOL
    assert config_drive["device"] == "cdrom" and config_drive["source"].endswith("disk.config")
    assert empty_cdrom["source"] is None and empty_cdrom["serial"] is None


def test_network_disks_take_their_source_from_the_name_attribute():
    disks = libvirt.parse_domain_xml(fixture_text("instance-rbd-shutoff.xml"))
    assert [(d["type"], d["source"]) for d in disks] == [
        ("network", "volumes/volume-" + RBD_VOL),
        ("network", "volumes/volume-" + RBD_BARE_VOL),
        ("file", "/var/lib/nova/mnt/0f3e2d1c4b5a69788796a5b4c3d2e1f0/volume-" + NFS_VOL)]
    assert disks[0]["alias"] is None and disks[1]["serial"] is None


def test_xml_that_is_not_a_domain_is_a_libvirt_error():
    with pytest.raises(LibvirtError, match="does not parse"):
        libvirt.parse_domain_xml("<domain><devices>")
    with pytest.raises(LibvirtError, match="<domain>"):
        libvirt.parse_domain_xml("<network/>")


DOMBLKLIST = """ Target   Source
-----------------------------------------------------------------------------
 sda      /var/lib/nova/instances/03549f61-9cee-4bdf-b5e9-39c18d815a06/disk
 sdb      volumes/volume-4abf2cfe-5208-47bb-9a72-15114a722113
 sdc      /mnt/nfs share/volume-x
 hdd      -

"""

DOMBLKLIST_DETAILS = """ Type      Device   Target   Source
--------------------------------------------------------------
 file      disk     vda      /var/lib/nova/instances/a b/disk
 network   disk     vdb      volumes/volume-4abf2cfe-5208-47bb-9a72-15114a722113
 file      cdrom    hdd      -

"""


def test_domblklist_without_details():
    rows = libvirt.parse_domblklist(DOMBLKLIST)
    assert [(r["target"], r["source"]) for r in rows] == [
        ("sda", "/var/lib/nova/instances/03549f61-9cee-4bdf-b5e9-39c18d815a06/disk"),
        ("sdb", "volumes/volume-4abf2cfe-5208-47bb-9a72-15114a722113"),
        ("sdc", "/mnt/nfs share/volume-x"),
        ("hdd", None)]
    assert rows[0]["type"] is None and rows[0]["device"] is None


def test_domblklist_with_details_and_without_a_header():
    rows = libvirt.parse_domblklist(DOMBLKLIST_DETAILS)
    assert rows[0] == {"type": "file", "device": "disk", "target": "vda",
                       "source": "/var/lib/nova/instances/a b/disk"}
    assert rows[2] == {"type": "file", "device": "cdrom", "target": "hdd", "source": None}
    quiet = "\n".join(DOMBLKLIST_DETAILS.splitlines()[2:])    # virsh -q: no header
    assert libvirt.parse_domblklist(quiet, details=True) == rows
    assert libvirt.parse_domblklist("") == []
    with pytest.raises(LibvirtError):
        libvirt.parse_domblklist(" vda\n", details=False)


# -- over SSH, against the lab's virsh stand-in ----------------------------------------------

RUNNING_UUID = "5f0c8a57-1d3e-4c2a-9b7e-2d6f1a0c3b41"
STOPPED_UUID = "9a7e4c11-2b5d-4e8f-a1c3-6d0b8e2f4a90"


def _disk(vol, dev):
    return {"type": "block", "device": "disk", "target_dev": dev, "target_bus": "scsi",
            "source": "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2010-10.org.openstack:"
                      "volume-%s-lun-0" % vol, "serial": vol, "alias": "ua-" + vol}


ROOT = dict(_disk("11111111-1111-4111-8111-111111111111", "sda"), boot=True)
DATA = _disk(ISCSI_VOL, "sdb")


@pytest.fixture
def lab_dir(tmp_path):
    domains = tmp_path / "lab" / "state" / "domains"
    domains.mkdir(parents=True)
    put_domain(domains, RUNNING_UUID, "instance-0000002a", "running",
               live=[ROOT, DATA], config=[ROOT])    # config half already detached by Nova
    put_domain(domains, STOPPED_UUID, "instance-0000002b", "shut off", live=[],
               config=[ROOT, _disk(RBD_VOL, "sdc")])
    return tmp_path / "lab"


def put_domain(domains, uuid, name, power, live, config):
    dom = {"uuid": uuid, "name": name, "power": power, "live": live, "config": config,
           "last_event": "fixture", "updated_at": "2026-01-01T00:00:00+00:00"}
    (domains / ("%s.json" % uuid)).write_text(json.dumps(dom))


def read_domain(lab_dir, uuid):
    return json.loads((lab_dir / "state" / "domains" / ("%s.json" % uuid)).read_text())


@pytest.fixture
def session(sshd, lab_dir):
    sshd.install("virsh", "#!/bin/sh\nLAB_DIR='%s' exec '%s' '%s' \"$@\"\n"
                 % (lab_dir, sys.executable, VIRSH_STANDIN))
    with SSHSession(SSHTarget(**sshd.target_args(host="cmp1"))) as opened:
        yield opened


VIRSH = ["virsh"]


def test_domain_disks_live_and_inactive(session):
    live = libvirt.domain_disks(session, VIRSH, "instance-0000002a")
    assert [d["target"] for d in live] == ["sda", "sdb"]
    assert live[1]["serial"] == ISCSI_VOL and live[1]["alias"] == "ua-" + ISCSI_VOL
    inactive = libvirt.domain_disks(session, VIRSH, RUNNING_UUID, inactive=True)
    assert [d["target"] for d in inactive] == ["sda"]


def test_an_unknown_domain_is_not_found(session):
    with pytest.raises(NotFound) as caught:
        libvirt.domain_disks(session, VIRSH, "instance-00000099")
    assert "failed to get domain" in caught.value.message
    assert caught.value.evidence()["exit_code"] == 1
    with pytest.raises(NotFound):
        libvirt.domain_state(session, VIRSH, "instance-00000099")


def test_domain_state_by_name_or_uuid(session):
    assert libvirt.domain_state(session, VIRSH, "instance-0000002a") == "running"
    assert libvirt.domain_state(session, VIRSH, "instance-0000002b") == "shut off"
    assert libvirt.domain_state(session, VIRSH, STOPPED_UUID) == "shut off"


def test_detach_disk_changes_the_domain(session, lab_dir):
    out = libvirt.detach_disk(session, VIRSH, "instance-0000002a", "sdb", "live")
    assert out["mode"] == "live" and "Disk detached successfully" in out["output_tail"]
    assert [d["target_dev"] for d in read_domain(lab_dir, RUNNING_UUID)["live"]] == ["sda"]


def test_detach_disk_failures_are_libvirt_errors_with_evidence(session, lab_dir):
    # the config half is already gone: --persistent fails and changes nothing
    with pytest.raises(LibvirtError) as caught:
        libvirt.detach_disk(session, VIRSH, "instance-0000002a", "sdb", "persistent")
    evidence = caught.value.evidence()
    assert evidence["exit_code"] == 1 and "no target device sdb" in evidence["stderr_tail"]
    assert evidence["command"] == "virsh detach-disk instance-0000002a sdb --persistent"
    assert len(read_domain(lab_dir, RUNNING_UUID)["live"]) == 2
    with pytest.raises(LibvirtError, match="domain is not running"):
        libvirt.detach_disk(session, VIRSH, "instance-0000002b", "sdc", "live")


@pytest.mark.parametrize("target, mode", [("sdb", "current"), ("--config", "live"),
                                          ("", "live")])
def test_detach_disk_refuses_bad_arguments_before_running(session, target, mode):
    with pytest.raises(InputError):
        libvirt.detach_disk(session, VIRSH, "instance-0000002a", target, mode)


def test_all_domains_disks_in_one_remote_command(session, lab_dir):
    calls = []
    real_run = session.run
    session.run = lambda argv, **kw: calls.append(argv) or real_run(argv, **kw)
    everything = libvirt.all_domains_disks(session, VIRSH)
    assert len(calls) == 1
    assert sorted(everything) == ["instance-0000002a", "instance-0000002b"]
    running = everything["instance-0000002a"]
    assert running["running"] is True
    assert [d["target"] for d in running["live"]] == ["sda", "sdb"]
    assert [d["target"] for d in running["config"]] == ["sda"]
    stopped = everything["instance-0000002b"]
    assert stopped["running"] is False
    assert [d["target"] for d in stopped["config"]] == ["sda", "sdc"]
    assert disks.disks_of_volume(stopped["config"], RBD_VOL)[0]["target"] == "sdc"


def test_all_domains_disks_quotes_the_prefix_and_odd_names(session, lab_dir, tmp_path):
    put_domain(lab_dir / "state" / "domains", "0a1b2c3d-0000-4000-8000-00000000000c",
               "odd name; $(touch x)", "running", live=[DATA], config=[DATA])
    marker = tmp_path / "injected"
    prefix = ["env", "DV_NOTE=a b; touch %s" % marker, "virsh"]
    everything = libvirt.all_domains_disks(session, prefix)
    assert [d["target"] for d in everything["odd name; $(touch x)"]["live"]] == ["sdb"]
    assert len(everything) == 3 and not marker.exists()


def test_all_domains_disks_on_an_empty_host_and_a_failing_virsh(session, lab_dir, sshd):
    for entry in (lab_dir / "state" / "domains").iterdir():
        entry.unlink()
    assert libvirt.all_domains_disks(session, VIRSH) == {}
    sshd.install("virsh", "#!/bin/sh\necho 'error: failed to connect to the hypervisor' >&2\n"
                          "exit 1\n")
    with pytest.raises(LibvirtError, match="failed to connect to the hypervisor"):
        libvirt.all_domains_disks(session, VIRSH)
