"""The classifier's view fixtures: an attachment's views by hand, healthy or per lab break."""

SERVER, VOLUME, OTHER = ("11111111-1111-1111-1111-111111111111",
                         "22222222-2222-2222-2222-222222222222",
                         "33333333-3333-3333-3333-333333333333")
ATT, ATT2 = "aaaaaaaa-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000002"


def healthy(status="ACTIVE"):
    return {
        "server": {"id": SERVER, "status": status, "task_state": None, "compute_host": "cmp1",
                   "instance_name": "instance-00000001", "root_device_name": "/dev/sda"},
        "volume_id": VOLUME,
        "nova": {"device": "/dev/sdb", "attachment_id": ATT, "bdm_id": "b1"},
        "cinder": {"id": VOLUME, "status": "in-use",
                   "attachments": [{"id": ATT, "status": "attached", "server_id": SERVER}]},
        "hypervisor": {"reachable": True, "domain": "instance-00000001",
                       "live": ["sdb"], "config": ["sdb"]},
    }


def broken(kind):
    v = healthy()
    if kind == "1":  # Cinder reset to available behind Nova's back
        v["cinder"].update(status="available", attachments=[])
    elif kind == "2a":  # backend down during detach: stuck detaching, disk already gone
        v["cinder"]["status"] = "detaching"
        v["hypervisor"].update(live=[], config=[])
    elif kind == "2b":  # guest refused: live but not in the next-boot config
        v["hypervisor"]["config"] = []
    elif kind == "4":
        v["hypervisor"].update(live=[], config=[])
    elif kind == "mismatch":
        v["cinder"]["attachments"][0]["id"] = ATT2
    elif kind == "orphan":
        v["nova"] = None
        v["hypervisor"].update(live=[], config=[])
    return v
