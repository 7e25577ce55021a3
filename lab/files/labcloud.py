"""Working with the lab cloud through its real APIs: servers with volumes, and the breakages.

Used by `lab/cloud` / `lab/break` (with the lab venv's Python) and imported by the tests.
Plain openstacksdk and subprocess; Python 3.8-compatible. Every wait has a deadline.
"""
import json
import os
import subprocess
import time

import openstack

LAB_DIR = os.environ.get("LAB_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), ".lab")


class LabCloudError(Exception):
    """A lab operation did not reach the state it waited for."""


def load_lab(lab_dir=None):
    path = os.path.join(lab_dir or LAB_DIR, "lab.json")
    with open(path) as f:
        return json.load(f)


def connect(lab, cloud="lab-admin"):
    os.environ["OS_CLIENT_CONFIG_FILE"] = lab["clouds_yaml"]
    return openstack.connect(cloud=cloud, api_timeout=60)


def wait_until(what, probe, timeout, interval=0.25):
    """probe() returns a truthy value when done, or raises to fail at once."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise LabCloudError("timed out after %.0f s waiting for %s" % (timeout, what))


def volume_status(conn, volume_id, want, failures=("error",), timeout=60):
    def probe():
        vol = conn.block_storage.get_volume(volume_id)
        if vol.status in failures:
            raise LabCloudError("volume %s went %s waiting for %s" % (volume_id, vol.status, want))
        return vol if vol.status == want else None
    return wait_until("volume %s to be %s" % (volume_id, want), probe, timeout)


def server_status(conn, server_id, want, timeout=90):
    def probe():
        srv = conn.compute.get_server(server_id)
        if srv.status == "ERROR":
            raise LabCloudError("server %s went ERROR: %s" % (server_id, srv.fault))
        return srv if srv.status == want and not srv.task_state else None
    return wait_until("server %s to be %s" % (server_id, want), probe, timeout)


def create_server(conn, name, data_volumes=1, size=1):
    """A server booted from a volume (no Glance in the lab) with data volumes attached."""
    flavor = conn.compute.find_flavor("lab.tiny", ignore_missing=False)
    boot = conn.block_storage.create_volume(name=name + "-boot", size=size)
    volume_status(conn, boot.id, "available")
    conn.block_storage.set_volume_bootable_status(boot, True)
    server = conn.compute.create_server(
        name=name, flavor_id=flavor.id, networks="none",
        block_device_mapping=[{"boot_index": 0, "uuid": boot.id, "source_type": "volume",
                               "destination_type": "volume", "delete_on_termination": True}])
    data = [conn.block_storage.create_volume(name="%s-data%d" % (name, i), size=size)
            for i in range(data_volumes)]
    server_status(conn, server.id, "ACTIVE")
    for vol in data:
        volume_status(conn, vol.id, "available")
        conn.compute.create_volume_attachment(server.id, volume_id=vol.id)
        volume_status(conn, vol.id, "in-use")
    return {"server_id": server.id, "boot_volume_id": boot.id,
            "volume_ids": [v.id for v in data]}


def delete_server(conn, server_id, volume_ids=(), timeout=90):
    """Delete a server and the given (data) volumes; the boot volume goes with the server."""
    conn.compute.delete_server(server_id, ignore_missing=True)
    conn.compute.wait_for_delete(conn.compute.get_server(server_id), interval=0.5,
                                 wait=timeout) if _exists(conn, server_id) else None
    for vid in volume_ids:
        vol = conn.block_storage.find_volume(vid)
        if vol is None:
            continue
        if vol.status != "available":
            conn.block_storage.reset_volume_status(vol, status="available",
                                                   attach_status="detached")
        conn.block_storage.delete_volume(vol, ignore_missing=True)


def _exists(conn, server_id):
    return conn.compute.find_server(server_id, ignore_missing=True) is not None


def nova_attachments(conn, server_id):
    """Nova's view at compute 2.89: volume id -> {device, attachment_id, bdm_id}."""
    return {a.volume_id: {"device": a.device, "attachment_id": a.attachment_id,
                          "bdm_id": a.bdm_id}
            for a in conn.compute.volume_attachments(server_id)}


def last_action(conn, server_id, action):
    """The newest instance action of that kind, with its events (compute API 2.84)."""
    actions = [a for a in conn.compute.server_actions(server_id) if a.action == action]
    if not actions:
        return None
    newest = max(actions, key=lambda a: a.start_time or "")
    return conn.compute.get_server_action(newest.request_id, server_id)


def action_done(conn, server_id, action, after_request_ids=()):
    """The newest `action` not in after_request_ids, once every event of it has finished."""
    act = last_action(conn, server_id, action)
    if act is None or act.request_id in after_request_ids:
        return None
    events = act.events or []
    if events and all(e.get("finish_time") for e in events):
        return act
    return None


def ssh(lab, host, command, timeout=60, stdin_text=None):
    """Run a command on a lab host over real SSH, verifying its host key."""
    s = lab["ssh"]
    argv = ["ssh", "-i", s["key_file"], "-p", str(s["port"]),
            "-o", "UserKnownHostsFile=%s" % s["known_hosts_file"],
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10", "-l", s["user"], s["hosts"][host], command]
    if stdin_text is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          input=stdin_text)


def domain_disks(lab, conn, server_id, inactive=False):
    """The hypervisor's view: virsh domblklist --details over SSH, as (target, source) rows."""
    srv = conn.compute.get_server(server_id)
    flag = " --inactive" if inactive else ""
    out = ssh(lab, srv.compute_host, "virsh domblklist %s --details%s" % (srv.instance_name, flag))
    if out.returncode != 0:
        raise LabCloudError("virsh domblklist failed (%d): %s" % (out.returncode, out.stderr))
    rows = []
    for line in out.stdout.splitlines()[2:]:
        parts = line.split(None, 3)
        if len(parts) == 4:
            rows.append({"type": parts[0], "device": parts[1], "target": parts[2],
                         "source": parts[3]})
    return rows


def create_project(conn, name, description="made by a test or a benchmark"):
    """A project of its own, in which the admin cloud's user holds the admin role, so that
    connect_project() can make servers and volumes there (and an audit be scoped to it)."""
    idp = conn.identity
    project = idp.create_project(name=name, domain_id="default", description=description)
    idp.assign_project_role_to_user(project, conn.current_user_id, idp.find_role("admin"))
    return project


def connect_project(lab, project_id, cloud="lab-admin"):
    """The admin cloud scoped to another project: what it creates belongs to that project."""
    os.environ["OS_CLIENT_CONFIG_FILE"] = lab["clouds_yaml"]
    return openstack.connect(cloud=cloud, project_id=project_id, api_timeout=60)


def delete_project(conn, project_id):
    conn.identity.delete_project(project_id, ignore_missing=True)


def purge_project(lab, project_id, parallel=4):
    """Delete every server and volume of a project, then the project: what a test or a
    benchmark made there, however far it got (servers in ERROR, orphaned attachments and
    volumes left in-use included). Returns (servers, volumes) deleted."""
    import concurrent.futures
    conn = connect(lab)
    servers = conn.compute.get("/servers/detail", params={
        "all_tenants": 1, "project_id": project_id}).json()["servers"]

    def delete_one(server_id):
        delete_server(connect(lab), server_id)    # one connection per worker thread
    with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
        list(pool.map(delete_one, [s["id"] for s in servers]))
    volumes = conn.block_storage.get("/volumes/detail", params={
        "all_tenants": 1, "project_id": project_id}).json()["volumes"]
    for vol in volumes:
        if vol["status"] == "deleting":
            continue
        if vol["status"] != "available":
            conn.block_storage.reset_volume_status(vol["id"], status="available",
                                                   attach_status="detached")
        conn.block_storage.delete_volume(vol["id"], ignore_missing=True)
    delete_project(conn, project_id)
    return len(servers), len(volumes)
