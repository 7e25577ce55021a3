"""The lab's hypervisor stand-ins: lab/files/virsh.py and lab/files/labdriver.py.

virsh.py is run as a program (as the lab's `virsh` wrapper runs it) against domain files
built here; the expected texts are virsh 9.x's. The labdriver tests need Nova and are
skipped without it (run them with the lab's venv python).
"""
import importlib.util
import json
import os
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "lab" / "files"
VIRSH = FILES / "virsh.py"

UUID_A = "0a1b2c3d-0000-4000-8000-00000000000a"   # instance-00000001, running
UUID_B = "0a1b2c3d-0000-4000-8000-00000000000b"   # instance-00000002, running
UUID_C = "0a1b2c3d-0000-4000-8000-00000000000c"   # instance-00000003, shut off
VOL_ROOT = "11111111-1111-4111-8111-111111111111"
VOL_1 = "22222222-2222-4222-8222-222222222222"
VOL_2 = "33333333-3333-4333-8333-333333333333"
KEYS = ["uuid", "name", "power", "live", "config", "last_event", "updated_at"]


def src(vol):
    return ("/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2010-10.org.openstack:"
            "volume-%s-lun-0" % vol)


def disk(vol, dev, boot=False):
    return {"type": "block", "device": "disk", "target_dev": dev, "target_bus": "scsi",
            "source": src(vol), "serial": vol, "alias": "ua-%s" % vol, "boot": boot}


ROOT = disk(VOL_ROOT, "sda", boot=True)
SDB = disk(VOL_1, "sdb")
SDC = disk(VOL_2, "sdc")


@pytest.fixture
def lab(tmp_path, monkeypatch):
    (tmp_path / "state" / "domains").mkdir(parents=True)
    (tmp_path / "state" / "refuse-detach").mkdir(parents=True)
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    return tmp_path


def put(lab, uuid, name, power, live, config):
    dom = {"uuid": uuid, "name": name, "power": power, "live": live, "config": config,
           "last_event": "fixture", "updated_at": "2024-01-01T00:00:00+00:00"}
    (lab / "state" / "domains" / ("%s.json" % uuid)).write_text(json.dumps(dom))
    return dom


def get(lab, uuid):
    return json.loads((lab / "state" / "domains" / ("%s.json" % uuid)).read_text())


@pytest.fixture
def three(lab):
    """A running with sdb live-only (a refused detach), B running, C shut off."""
    put(lab, UUID_B, "instance-00000002", "running", [ROOT, SDC], [ROOT, SDC])
    put(lab, UUID_A, "instance-00000001", "running", [ROOT, SDB], [ROOT])
    put(lab, UUID_C, "instance-00000003", "shut off", [ROOT, SDB, SDC], [ROOT, SDC])
    return lab


def virsh(lab, *args):
    env = dict(os.environ, LAB_DIR=str(lab))
    proc = subprocess.run([sys.executable, str(VIRSH)] + list(args), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def table(*rows):
    """Expected vsh-table text: ' ' before each cell, width + 2 padding, dashed line."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        text = "".join(" " + c + (" " * (widths[i] - len(c) + 2) if i < len(row) - 1
                                  else "") for i, c in enumerate(row))
        lines.append(text)
        if n == 0:
            lines.append("-" * sum(w + 3 for w in widths))
    return "\n".join(lines) + "\n\n"


# ---------------------------------------------------------------------------- list

def test_list_running_only(three):
    assert virsh(three, "list") == (0, (
        " Id   Name                State\n"
        "-----------------------------------\n"
        " 1    instance-00000001   running\n"
        " 2    instance-00000002   running\n"
        "\n"), "")


def test_list_all(three):
    assert virsh(three, "list", "--all") == (0, (
        " Id   Name                State\n"
        "------------------------------------\n"
        " 1    instance-00000001   running\n"
        " 2    instance-00000002   running\n"
        " -    instance-00000003   shut off\n"
        "\n"), "")


def test_list_names(three):
    assert virsh(three, "list", "--name") == (
        0, "instance-00000001\ninstance-00000002\n\n", "")
    assert virsh(three, "list", "--all", "--name") == (
        0, "instance-00000001\ninstance-00000002\ninstance-00000003\n\n", "")


def test_list_empty_and_quiet(lab):
    assert virsh(lab, "list", "--all") == (
        0, " Id   Name   State\n--------------------\n\n", "")
    put(lab, UUID_A, "instance-00000001", "running", [], [])
    assert virsh(lab, "-q", "list") == (0, " 1    instance-00000001   running\n", "")


def test_list_as_one_command_string(three):
    assert virsh(three, "list --all --name") == (
        0, "instance-00000001\ninstance-00000002\ninstance-00000003\n\n", "")


# ---------------------------------------------------------------------- domblklist

def test_domblklist_live_by_name(three):
    assert virsh(three, "domblklist", "instance-00000001") == (0, table(
        ["Target", "Source"], ["sda", src(VOL_ROOT)], ["sdb", src(VOL_1)]), "")


def test_domblklist_inactive_by_uuid(three):
    assert virsh(three, "domblklist", UUID_A, "--inactive") == (0, table(
        ["Target", "Source"], ["sda", src(VOL_ROOT)]), "")


def test_domblklist_by_id_and_details(three):
    expected = (
        " Type    Device   Target   Source\n" +
        "-" * (8 + 9 + 9 + len(src(VOL_ROOT)) + 3) + "\n"
        " block   disk     sda      %s\n"
        " block   disk     sdc      %s\n"
        "\n") % (src(VOL_ROOT), src(VOL_2))
    assert virsh(three, "domblklist", "2", "--details") == (0, expected, "")
    assert virsh(three, "domblklist", "--details", "--domain", "instance-00000002") == (
        0, expected, "")
    assert virsh(three, "domblklist", "--domain=instance-00000002", "--details") == (
        0, expected, "")


def test_domblklist_shut_off_shows_config(three):
    expected = table(["Target", "Source"], ["sda", src(VOL_ROOT)], ["sdc", src(VOL_2)])
    assert virsh(three, "domblklist", "instance-00000003") == (0, expected, "")
    assert virsh(three, "domblklist", "instance-00000003", "--inactive") == (
        0, expected, "")


def test_domblklist_no_disks(lab):
    put(lab, UUID_A, "instance-00000001", "running", [], [])
    assert virsh(lab, "domblklist", "instance-00000001") == (
        0, " Target   Source\n------------------\n\n", "")


def test_unknown_domain(three):
    for name in ("instance-00000009", "0a1b2c3d-0000-4000-8000-0000000000ff", "3"):
        assert virsh(three, "domblklist", name) == (
            1, "\n", "error: failed to get domain '%s'\n" % name)


# ------------------------------------------------------------------------- dumpxml

def disks_in(xml_text):
    root = ET.fromstring(xml_text)
    return root, [(d.find("target").get("dev"), d.find("serial").text,
                   d.find("alias").get("name"), d.find("source").get("dev"))
                  for d in root.findall("./devices/disk")]


def test_dumpxml_live_and_inactive(three):
    rc, out, err = virsh(three, "dumpxml", "instance-00000001")
    assert (rc, err) == (0, "")
    assert out.startswith("<domain type='kvm' id='1'>\n  <name>instance-00000001</name>\n")
    assert out.endswith("</domain>\n\n")
    root, found = disks_in(out)
    assert root.find("uuid").text == UUID_A
    assert found == [("sda", VOL_ROOT, "ua-" + VOL_ROOT, src(VOL_ROOT)),
                     ("sdb", VOL_1, "ua-" + VOL_1, src(VOL_1))]
    assert (
        "    <disk type='block' device='disk'>\n"
        "      <driver name='qemu' type='raw' cache='none' io='native'/>\n"
        "      <source dev='%s'/>\n"
        "      <target dev='sdb' bus='scsi'/>\n"
        "      <serial>%s</serial>\n"
        "      <alias name='ua-%s'/>\n"
        "      <address type='drive' controller='0' bus='0' target='0' unit='1'/>\n"
        "    </disk>\n" % (src(VOL_1), VOL_1, VOL_1)) in out

    rc, out, err = virsh(three, "dumpxml", "--inactive", "instance-00000001")
    assert (rc, err) == (0, "")
    assert out.startswith("<domain type='kvm'>\n")
    assert [f[0] for f in disks_in(out)[1]] == ["sda"]


def test_dumpxml_shut_off_has_no_id_and_shows_config(three):
    rc, out, err = virsh(three, "dumpxml", UUID_C)
    assert (rc, err) == (0, "")
    assert out.startswith("<domain type='kvm'>\n")
    assert [f[0] for f in disks_in(out)[1]] == ["sda", "sdc"]


# --------------------------------------------------------------------- detach-disk

DETACHED = (0, "Disk detached successfully\n\n", "")


def test_detach_live_on_shut_off_domain_fails(three):
    before = get(three, UUID_C)
    assert virsh(three, "detach-disk", "instance-00000003", "sdc", "--live") == (
        1, "\n", "error: Failed to detach disk\n"
                 "error: Requested operation is not valid: domain is not running\n")
    assert get(three, UUID_C) == before


def test_detach_without_flags_on_shut_off_domain_fails(three):
    """virsh uses the legacy API, which the QEMU driver runs as --live."""
    assert virsh(three, "detach-disk", "instance-00000003", "sdc") == (
        1, "\n", "error: Failed to detach disk\n"
                 "error: Requested operation is not valid: domain is not running\n")


def test_detach_live_removes_from_live_only(three):
    assert virsh(three, "detach-disk", "instance-00000001", "sdb", "--live") == DETACHED
    dom = get(three, UUID_A)
    assert list(dom) == KEYS
    assert dom["live"] == [ROOT] and dom["config"] == [ROOT]
    assert dom["last_event"] == "virsh detach-disk sdb (live)"
    assert dom["updated_at"] != "2024-01-01T00:00:00+00:00"
    assert sorted(os.listdir(three / "state" / "domains")) == sorted(
        [".lock", UUID_A + ".json", UUID_B + ".json", UUID_C + ".json"])


def test_detach_without_flags_on_running_domain_is_live(three):
    assert virsh(three, "detach-disk", "instance-00000002", "sdc") == DETACHED
    dom = get(three, UUID_B)
    assert dom["live"] == [ROOT] and dom["config"] == [ROOT, SDC]


def test_detach_current(three):
    assert virsh(three, "detach-disk", "instance-00000002", "sdc", "--current") == DETACHED
    assert get(three, UUID_B)["live"] == [ROOT]
    assert get(three, UUID_B)["config"] == [ROOT, SDC]
    assert virsh(three, "detach-disk", "instance-00000003", "sdc", "--current") == DETACHED
    assert get(three, UUID_C)["config"] == [ROOT]
    assert get(three, UUID_C)["live"] == [ROOT, SDB, SDC]


def test_detach_config_removes_from_config_only(three):
    assert virsh(three, "detach-disk", "instance-00000002", "sdc", "--config") == DETACHED
    dom = get(three, UUID_B)
    assert dom["live"] == [ROOT, SDC] and dom["config"] == [ROOT]


def test_detach_config_looks_in_the_inactive_xml(three):
    """sdb is in A's live XML only: --config does not find it."""
    assert virsh(three, "detach-disk", "instance-00000001", "sdb", "--config") == (
        1, "\n", "error: No disk found whose source path or target is sdb\n")


def test_detach_persistent_running_removes_both(three):
    assert virsh(three, "detach-disk", "instance-00000002", "sdc",
                 "--persistent") == DETACHED
    dom = get(three, UUID_B)
    assert dom["live"] == [ROOT] and dom["config"] == [ROOT]


def test_detach_persistent_fails_on_missing_config_half(three):
    before = get(three, UUID_A)
    assert virsh(three, "detach-disk", "instance-00000001", "sdb", "--persistent") == (
        1, "\n", "error: Failed to detach disk\n"
                 "error: device not found: no target device sdb\n")
    assert get(three, UUID_A) == before


def test_detach_persistent_shut_off_is_config_only(three):
    assert virsh(three, "detach-disk", UUID_C, "sdc", "--persistent") == DETACHED
    dom = get(three, UUID_C)
    assert dom["config"] == [ROOT] and dom["live"] == [ROOT, SDB, SDC]


def test_detach_live_and_config_together(three):
    assert virsh(three, "detach-disk", "instance-00000002", "sdc", "--live",
                 "--config") == DETACHED
    dom = get(three, UUID_B)
    assert dom["live"] == [ROOT] and dom["config"] == [ROOT]


def test_detach_by_source_path(three):
    assert virsh(three, "detach-disk", "instance-00000001", src(VOL_1),
                 "--live") == DETACHED
    assert get(three, UUID_A)["live"] == [ROOT]


def test_detach_unknown_target(three):
    before = get(three, UUID_A)
    assert virsh(three, "detach-disk", "instance-00000001", "sdz", "--live") == (
        1, "\n", "error: No disk found whose source path or target is sdz\n")
    assert get(three, UUID_A) == before


def test_detach_unknown_domain(three):
    assert virsh(three, "detach-disk", "instance-00000042", "sdb") == (
        1, "\n", "error: failed to get domain 'instance-00000042'\n")


def test_detach_exclusive_options(three):
    assert virsh(three, "detach-disk", "instance-00000001", "sdb", "--current",
                 "--live") == (
        1, "\n", "error: Options --current and --live are mutually exclusive\n")
    assert virsh(three, "detach-disk", "instance-00000001", "sdb", "--persistent",
                 "--current") == (
        1, "\n", "error: Options --persistent and --current are mutually exclusive\n")


def test_detach_print_xml_changes_nothing(three):
    before = get(three, UUID_A)
    rc, out, err = virsh(three, "detach-disk", "instance-00000001", "sdb", "--print-xml")
    assert (rc, err) == (0, "")
    assert out.startswith("<disk type='block' device='disk'>\n")
    assert out.endswith("    </disk>\n")
    assert get(three, UUID_A) == before


def test_detach_quiet_and_readonly(three):
    assert virsh(three, "-q", "detach-disk", "instance-00000002", "sdc", "--live") == (
        0, "", "")
    assert virsh(three, "-r", "detach-disk", "instance-00000002", "sda", "--live") == (
        1, "\n", "error: Failed to detach disk\n"
                 "error: operation forbidden: read only access prevents "
                 "virDomainDetachDeviceFlags\n")


# ----------------------------------------------------------------------- bad usage

@pytest.mark.parametrize("args, message", [
    (["domblkstat", "x"], "unknown command: 'domblkstat'"),
    (["list", "--uuid"], "command 'list' doesn't support option --uuid"),
    (["domblklist"], "command 'domblklist' requires <domain> option"),
    (["detach-disk", "instance-00000001"], "command 'detach-disk' requires <target> option"),
    (["dumpxml", "instance-00000001", "extra"], "unexpected data 'extra'"),
    (["domblklist", "--domain"], "expected syntax: --domain <string>"),
])
def test_bad_usage(three, args, message):
    assert virsh(three, *args) == (1, "", "error: %s\n" % message)


def test_no_lab_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LAB_DIR"}
    proc = subprocess.run([sys.executable, str(VIRSH), "list"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: failed to connect to the hypervisor\n")


# ------------------------------------------------------------------------ labdriver

@pytest.fixture
def labdriver(lab):
    pytest.importorskip("nova")
    spec = importlib.util.spec_from_file_location("labdriver_under_test",
                                                  str(FILES / "labdriver.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conn_info(vol, serial=True):
    info = {"driver_volume_type": "iscsi", "data": {"volume_id": vol}}
    if serial:
        info["serial"] = vol
    return info


def bdi(*vols, root=None):
    mapping = [{"mount_device": "/dev/" + dev, "connection_info": conn_info(vol),
                "disk_bus": None} for vol, dev in vols]
    return {"root_device_name": root, "block_device_mapping": mapping}


def instance(uuid=UUID_A, name="instance-00000001"):
    flavor = types.SimpleNamespace(vcpus=1, memory_mb=512, root_gb=1)
    return types.SimpleNamespace(uuid=uuid, name=name, flavor=flavor)


def test_labdriver_pure_helpers(labdriver):
    assert labdriver.volume_id(conn_info(VOL_1)) == VOL_1
    assert labdriver.volume_id(conn_info(VOL_1, serial=False)) == VOL_1
    assert labdriver.target_dev("/dev/sdb") == "sdb"
    assert labdriver.make_disk(conn_info(VOL_1), "/dev/sdb") == SDB
    assert labdriver.make_disk(conn_info(VOL_1), "/dev/vdb")["target_bus"] == "virtio"
    info = bdi((VOL_1, "sdb"), (VOL_ROOT, "sda"), root="/dev/sda")
    assert labdriver.disks_from_block_device_info(info) == [ROOT, SDB]
    assert labdriver.disks_from_block_device_info(None) == []


@pytest.fixture
def drv(labdriver):
    d = labdriver.LabDriver(None)
    d.init_host("lab-compute")
    return d


def test_labdriver_lifecycle(lab, labdriver, drv):
    from nova.compute import power_state

    inst = instance()
    drv.spawn(None, inst, None, None, None, None,
              block_device_info=bdi((VOL_ROOT, "sda"), root="/dev/sda"))
    dom = get(lab, UUID_A)
    assert list(dom) == KEYS
    assert (dom["name"], dom["power"], dom["live"], dom["config"], dom["last_event"]) == (
        "instance-00000001", "running", [ROOT], [ROOT], "spawn")

    drv.attach_volume(None, conn_info(VOL_1), inst, "/dev/sdb")
    assert get(lab, UUID_A)["live"] == [ROOT, SDB] == get(lab, UUID_A)["config"]
    # what the driver wrote is what virsh reads
    assert virsh(lab, "domblklist", "instance-00000001")[1] == table(
        ["Target", "Source"], ["sda", src(VOL_ROOT)], ["sdb", src(VOL_1)])

    drv.power_off(inst)
    dom = get(lab, UUID_A)
    assert (dom["power"], dom["live"], dom["config"]) == ("shut off", [ROOT, SDB],
                                                          [ROOT, SDB])
    assert drv.get_info(inst).state == power_state.SHUTDOWN

    # power_on regenerates the domain from the BDMs, whatever was edited meanwhile
    put(lab, UUID_A, "instance-00000001", "shut off", [], [])
    drv.power_on(None, inst, None, block_device_info=bdi(
        (VOL_ROOT, "sda"), (VOL_1, "sdb"), root="/dev/sda"))
    dom = get(lab, UUID_A)
    assert (dom["power"], dom["live"], dom["config"], dom["last_event"]) == (
        "running", [ROOT, SDB], [ROOT, SDB], "power_on")
    assert drv.get_info(inst).state == power_state.RUNNING

    drv.destroy(None, inst, None)
    assert not (lab / "state" / "domains" / (UUID_A + ".json")).exists()
    assert drv.resources.dump()["vcpus_used"] == 0


def test_labdriver_refused_detach(lab, labdriver, drv):
    from nova import exception

    inst = instance()
    put(lab, UUID_A, "instance-00000001", "running", [ROOT, SDB], [ROOT, SDB])
    (lab / "state" / "refuse-detach" / VOL_1).touch()
    with pytest.raises(exception.DeviceDetachFailed) as err:
        drv.detach_volume(None, conn_info(VOL_1), inst, "/dev/sdb")
    assert err.value.kwargs["device"] == "sdb"
    dom = get(lab, UUID_A)
    assert dom["live"] == [ROOT, SDB] and dom["config"] == [ROOT]

    # the guest lets go once the flag is gone
    (lab / "state" / "refuse-detach" / VOL_1).unlink()
    drv.detach_volume(None, conn_info(VOL_1), inst, "/dev/sdb")
    dom = get(lab, UUID_A)
    assert dom["live"] == [ROOT] and dom["config"] == [ROOT]

    # gone from both lists: treated as already detached
    drv.detach_volume(None, conn_info(VOL_1), inst, "/dev/sdb")
    assert get(lab, UUID_A)["live"] == [ROOT]


def test_labdriver_refuse_flag_ignored_when_shut_off(lab, labdriver, drv):
    put(lab, UUID_A, "instance-00000001", "shut off", [ROOT, SDB], [ROOT, SDB])
    (lab / "state" / "refuse-detach" / VOL_1).touch()
    drv.detach_volume(None, conn_info(VOL_1, serial=False), instance(), "/dev/sdb")
    assert get(lab, UUID_A)["config"] == [ROOT]


def test_labdriver_restart_reloads_instances(lab, labdriver):
    from nova.compute import power_state

    put(lab, UUID_A, "instance-00000001", "running", [ROOT, SDB], [ROOT, SDB])
    put(lab, UUID_C, "instance-00000003", "shut off", [ROOT], [ROOT])
    d = labdriver.LabDriver(None)
    d.init_host("lab-compute")
    assert sorted(d.list_instance_uuids()) == [UUID_A, UUID_C]
    assert d.get_info(instance(UUID_C, "instance-00000003")).state == power_state.SHUTDOWN
    d.power_off(instance())          # no InstanceNotFound after a restart
    assert get(lab, UUID_A)["power"] == "shut off"
    d.destroy(None, instance(), None)
    assert d.resources.dump()["vcpus_used"] == 0


def test_labdriver_soft_reboot_relaunches_config(lab, labdriver, drv):
    put(lab, UUID_A, "instance-00000001", "running", [ROOT, SDB], [ROOT])
    drv.reboot(None, instance(), None, "SOFT")
    dom = get(lab, UUID_A)
    assert dom["live"] == [ROOT] and dom["last_event"] == "reboot soft"
    drv.reboot(None, instance(), None, "HARD",
               block_device_info=bdi((VOL_ROOT, "sda"), (VOL_1, "sdb"), root="/dev/sda"))
    dom = get(lab, UUID_A)
    assert dom["live"] == [ROOT, SDB] == dom["config"]
