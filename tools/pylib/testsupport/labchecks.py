"""Checks the lab-tier tests share: malformed ids, a server's state, healed, attachment records."""
import labcloud  # lab/files: the lab's client helpers (pytest.ini puts them on the path)

MALFORMED = ["not-a-uuid", "1111; reboot", "$(touch /tmp/pwned)",
             "03549f61-9cee-4bdf-b5e9-39c18d815a06 && true", "'; DROP TABLE"]


def state(lab, conn, info):
    """Everything a remedy could change, to compare before and after."""
    sid = info["server_id"]
    srv = conn.compute.get_server(sid)
    out = {"server": (srv.status, srv.is_locked), "nova": labcloud.nova_attachments(conn, sid)}
    for vid in [info["boot_volume_id"]] + info["volume_ids"]:
        vol = conn.block_storage.get_volume(vid)
        out[vid] = (vol.status, sorted((a.id, a.status) for a in
                                       conn.block_storage.attachments(volume_id=vid)))
    out["disks"] = (labcloud.domain_disks(lab, conn, sid),
                    labcloud.domain_disks(lab, conn, sid, inactive=True))
    return out


def healed(lab, conn, info, volume_id):
    sid = info["server_id"]
    assert volume_id not in labcloud.nova_attachments(conn, sid)
    vol = conn.block_storage.get_volume(volume_id)
    assert vol.status == "available"
    assert list(conn.block_storage.attachments(volume_id=volume_id)) == []
    for inactive in (False, True):
        assert [d["target"] for d in labcloud.domain_disks(lab, conn, sid, inactive)] == ["sda"]
    assert conn.compute.get_server(sid).status == "ACTIVE"  # power restored


def records(conn, volume_id):
    """Cinder's attachment records of a volume of any project (the SDK's listing would see
    the admin project's only)."""
    return conn.block_storage.get("/attachments/detail", params={
        "all_tenants": 1, "volume_id": volume_id}, microversion="3.27").json()["attachments"]
