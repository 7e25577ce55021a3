"""model.disks: the one rule that says which Cinder volume a libvirt disk is (docs/disks.md),
used by identify, verify, the last resort's detach-disk and the audit alike. Disks come from
our own domain XML fixtures (tests/fixtures/libvirt) or are written out here."""
import os

import pytest

from dvremedy.adapters import libvirt
from dvremedy.model import disks

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "fixtures", "libvirt")
ISCSI_VOL = "8d3c52b0-6a4f-4f1e-9c3a-7b2e91d0aa15"
RBD_VOL = "c41e7f09-5d2a-4b3c-8e6f-0a9b1c2d3e4f"          # serial, no alias
RBD_BARE_VOL = "e5f6a7b8-1c2d-4e3f-9a0b-c1d2e3f4a5b6"     # neither serial nor alias
NFS_VOL = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
VOL_A = "0a0a0a0a-1111-4111-8111-000000000001"
VOL_B = "0b0b0b0b-2222-4222-8222-000000000002"


def fixture_disks(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return libvirt.parse_domain_xml(f.read())


def test_volumes_match_by_serial_or_alias_first():
    iscsi = fixture_disks("instance-iscsi-running.xml")
    assert [d["target"] for d in disks.disks_of_volume(iscsi, ISCSI_VOL)] == ["sdb"]
    assert disks.disks_of_volume(iscsi, ISCSI_VOL.upper())[0]["target"] == "sdb"
    rbd = fixture_disks("instance-rbd-shutoff.xml")
    assert [d["target"] for d in disks.disks_of_volume(rbd, RBD_VOL)] == ["vda"]
    alias_only = [{"target": "vdz", "serial": None, "alias": "ua-" + NFS_VOL, "source": "x"}]
    assert disks.disks_of_volume(alias_only, NFS_VOL) == alias_only


def test_the_source_path_is_only_a_fallback():
    rbd = fixture_disks("instance-rbd-shutoff.xml")
    assert [d["target"] for d in disks.disks_of_volume(rbd, RBD_BARE_VOL)] == ["vdb"]
    # a serial match elsewhere wins over a source that merely mentions the id
    decoy = {"target": "vdy", "serial": None, "alias": None, "source": "/x/" + NFS_VOL}
    matched = disks.disks_of_volume(rbd + [decoy], NFS_VOL)
    assert [d["target"] for d in matched] == ["vdc"]
    assert disks.disks_of_volume(rbd, "00000000-0000-4000-8000-000000000000") == []


@pytest.mark.parametrize("disk_facts, expected", [
    ({"serial": VOL_A.upper(), "alias": None, "source": None}, VOL_A),
    ({"serial": None, "alias": "ua-" + VOL_B, "source": None}, VOL_B),
    ({"serial": "not-a-volume", "alias": "virtio-disk0",
      "source": "volumes/volume-%s" % VOL_A}, VOL_A),
    ({"serial": None, "alias": "virtio-disk0",
      "source": "/var/lib/nova/instances/%s/disk" % VOL_B}, None),
    ({"serial": None, "alias": None, "source": None}, None),
])
def test_a_disk_is_a_volume_by_serial_alias_or_volume_source(disk_facts, expected):
    assert disks.volume_id_of(disk_facts) == expected


@pytest.mark.parametrize("source", [
    "/mnt/" + VOL_A,                                  # the bare id as a file name
    "/var/lib/nova/instances/%s/disk" % VOL_A,        # the id as a directory
    "volumes/volume-%s-old" % VOL_A,                  # more after the id
    "volumes/snap-volume-%s" % VOL_A,                 # more before "volume-"
    "volumes/volume-%s/extra" % VOL_A,                # not the last component
])
def test_a_source_that_only_contains_the_id_names_no_volume(source):
    """The rule that replaced "any source containing the id": before it, the remedy matched
    each of these sources to VOL_A while the audit did not."""
    disk = {"target": "vdq", "serial": None, "alias": None, "source": source}
    assert disks.volume_id_of(disk) is None
    assert disks.disks_of_volume([disk], VOL_A) == []


def test_a_mark_decides_even_when_the_source_names_another_volume():
    disk = {"target": "vdq", "serial": VOL_B, "alias": None,
            "source": "volumes/volume-" + VOL_A}
    assert disks.volume_id_of(disk) == VOL_B
    assert disks.disks_of_volume([disk], VOL_A) == []


def test_volume_ids_on_a_domain_cover_live_and_config():
    domain = {"live": [{"serial": VOL_A, "alias": None, "source": None}],
              "config": [{"serial": None, "alias": "ua-" + VOL_B, "source": None},
                         {"serial": None, "alias": None, "source": "/var/lib/nova/disk"}]}
    assert disks.volume_ids_on_domain(domain) == {VOL_A, VOL_B}
    assert disks.volume_ids_on_domain({"live": None, "config": None}) == set()
