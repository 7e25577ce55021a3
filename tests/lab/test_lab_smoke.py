"""Smoke test of the lab: a healthy attachment's life cycle through the real APIs, seen the way
an operator sees it (Nova 2.89, Cinder, virsh over SSH)."""
import subprocess

import labcloud


def test_boot_attach_list_detach(lab, conn, make_server):
    info = make_server(data_volumes=1)
    server_id, volume_id = info["server_id"], info["volume_ids"][0]

    nova = labcloud.nova_attachments(conn, server_id)
    assert set(nova) == {info["boot_volume_id"], volume_id}  # the boot volume is listed too
    assert nova[info["boot_volume_id"]]["device"] == "/dev/sda"
    assert nova[volume_id]["device"] == "/dev/sdb"
    assert nova[volume_id]["attachment_id"] and nova[volume_id]["bdm_id"]

    cinder = conn.block_storage.get_volume(volume_id)
    assert cinder.status == "in-use"
    assert [a["attachment_id"] for a in cinder.attachments] == [nova[volume_id]["attachment_id"]]
    assert cinder.attachments[0]["server_id"] == server_id
    assert cinder.attachments[0]["host_name"] == lab["compute_host"]

    server = conn.compute.get_server(server_id)
    assert server.compute_host == lab["compute_host"]
    for inactive in (False, True):
        disks = labcloud.domain_disks(lab, conn, server_id, inactive=inactive)
        assert [d["target"] for d in disks if volume_id in d["source"]] == ["sdb"]

    conn.compute.delete_volume_attachment(server_id, volume_id, ignore_missing=False)
    labcloud.volume_status(conn, volume_id, "available")
    assert volume_id not in labcloud.nova_attachments(conn, server_id)
    assert list(conn.block_storage.attachments(volume_id=volume_id)) == []
    for inactive in (False, True):
        disks = labcloud.domain_disks(lab, conn, server_id, inactive=inactive)
        assert [d["target"] for d in disks] == ["sda"]


def test_virsh_lists_the_domain_by_instance_name(lab, conn, make_server):
    info = make_server(data_volumes=0)
    server = conn.compute.get_server(info["server_id"])
    out = labcloud.ssh(lab, server.compute_host, "virsh list --name")
    assert out.returncode == 0, out.stderr
    assert server.instance_name in out.stdout.split()
    xml = labcloud.ssh(lab, server.compute_host, "virsh dumpxml %s" % server.instance_name)
    assert "<serial>%s</serial>" % info["boot_volume_id"] in xml.stdout
    assert "<alias name='ua-%s'/>" % info["boot_volume_id"] in xml.stdout


def test_ssh_rejects_a_changed_host_key(lab, tmp_path):
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text("[%s]:%d %s %s\n" % (lab["ssh"]["hosts"][lab["compute_host"]],
                                          lab["ssh"]["port"], kind, blob))
    bad = dict(lab, ssh=dict(lab["ssh"], known_hosts_file=str(known)))
    out = labcloud.ssh(bad, lab["compute_host"], "true")
    assert out.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in out.stderr
