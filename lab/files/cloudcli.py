"""`lab/cloud` and `lab/break`: make servers with volumes on the lab and break their attachments
the ways real clouds break. Runs with the lab venv's Python (openstacksdk); prints what an
operator would see. `lab/cloud --help` lists the commands.
"""
import argparse
import json
import os
import sys
import time

import labcloud as lc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from labctl import procs  # noqa: E402
from labctl.settings import Settings  # noqa: E402
from labctl.up import start_daemon, wait_service_up  # noqa: E402

DETACH_TIMEOUT = 120  # a backend-down detach takes ~25 s with rpc_response_timeout = 5


def say(msg):
    print(msg, flush=True)


def _views(lab, conn, server_id, volume_id):
    vol = conn.block_storage.get_volume(volume_id)
    nova = lc.nova_attachments(conn, server_id).get(volume_id)
    cinder_atts = [{"id": a.id, "status": a.status, "instance": a.instance}
                   for a in conn.block_storage.attachments(volume_id=volume_id)]
    live = [d["target"] for d in lc.domain_disks(lab, conn, server_id) if volume_id in d["source"]]
    config = [d["target"] for d in lc.domain_disks(lab, conn, server_id, inactive=True)
              if volume_id in d["source"]]
    return {"nova": nova, "cinder": {"status": vol.status,
                                     "attachments": cinder_atts},
            "hypervisor": {"live": live, "config": config}}


def _attachment_states(conn, volume_id):
    return ", ".join("%s %s" % (a.id, a.status)
                     for a in conn.block_storage.attachments(volume_id=volume_id)) or "none"


def cmd_server(lab, conn, args):
    t0 = time.monotonic()
    info = lc.create_server(conn, args.name, data_volumes=args.data_volumes)
    say("server %s ACTIVE with data volume(s) %s in %.1f s" % (
        info["server_id"], ", ".join(info["volume_ids"]), time.monotonic() - t0))
    print(json.dumps(info))


def cmd_show(lab, conn, args):
    print(json.dumps(_views(lab, conn, args.server_id, args.volume_id), indent=2))


def cmd_delete(lab, conn, args):
    lc.delete_server(conn, args.server_id, args.volume_ids)
    say("deleted server %s and volume(s) %s" % (args.server_id, ", ".join(args.volume_ids)))


def _detach_and_wait(conn, server_id, volume_id):
    """Ask Nova to detach (it answers 202) and wait until nova-compute has finished trying."""
    before = {a.request_id for a in conn.compute.server_actions(server_id)}
    conn.compute.delete_volume_attachment(server_id, volume_id, ignore_missing=False)
    say("  DELETE os-volume_attachments/%s -> 202 accepted" % volume_id)
    act = lc.wait_until("nova-compute to finish the detach",
                        lambda: lc.action_done(conn, server_id, "detach_volume", before),
                        DETACH_TIMEOUT, interval=0.5)
    results = ", ".join("%s %s" % (e["event"], e.get("result")) for e in act.events)
    say("  instance action detach_volume: %s" % results)
    return act


def break_cinder_reset(lab, conn, args):
    """1: Cinder reset to available/detached behind Nova's back."""
    conn.block_storage.reset_volume_status(args.volume_id, status="available",
                                           attach_status="detached")
    lc.volume_status(conn, args.volume_id, "available", timeout=30)
    say("  Cinder: volume available, detached, attachments deleted; Nova still lists it")


def break_backend_down(lab, conn, args):
    """2a: the storage backend (cinder-volume) is down during the detach."""
    s = Settings()
    procs.stop_service(s, "cinder-volume", log=say)
    say("  cinder-volume stopped")
    try:
        _detach_and_wait(conn, args.server_id, args.volume_id)
    finally:
        start_daemon(s, "cinder-volume")
        wait_service_up(s, "volume", 90)
        say("  cinder-volume started again and up")
    vol = conn.block_storage.get_volume(args.volume_id)
    say("  Cinder: volume %s, attachments %s" % (vol.status, _attachment_states(conn, vol.id)))


def break_guest_refuses(lab, conn, args):
    """2b: the guest refuses to release the disk (DeviceDetachFailed), until heal-guest."""
    flag = os.path.join(lab["state_dir"], "refuse-detach", args.volume_id)
    open(flag, "w").close()
    say("  guest will refuse to detach volume %s while running (flag %s)" % (args.volume_id, flag))
    _detach_and_wait(conn, args.server_id, args.volume_id)
    vol = conn.block_storage.get_volume(args.volume_id)
    say("  Cinder: volume %s, attachments %s" % (vol.status, _attachment_states(conn, vol.id)))


def break_heal_guest(lab, conn, args):
    flag = os.path.join(lab["state_dir"], "refuse-detach", args.volume_id)
    if os.path.exists(flag):
        os.unlink(flag)
    say("  guest cooperates again for volume %s" % args.volume_id)


def break_wrong_connector(lab, conn, args):
    """3: a connector taken on the wrong host (the controller), written to a file."""
    out = lc.ssh(lab, lab["controller_host"], "nova-manage volume_attachment get_connector --json")
    if out.returncode != 0:
        raise lc.LabCloudError("get_connector on the controller failed (%d): %s"
                               % (out.returncode, out.stderr[-500:]))
    with open(args.path, "w") as f:
        f.write(out.stdout)
    say("  connector from host %s written to %s" % (json.loads(out.stdout)["host"], args.path))


def break_hypervisor_only(lab, conn, args):
    """4: the disk is gone from the domain while Nova and Cinder still list the attachment."""
    srv = conn.compute.get_server(args.server_id)
    target = lc.nova_attachments(conn, args.server_id)[args.volume_id]["device"].rsplit("/", 1)[-1]
    out = lc.ssh(lab, srv.compute_host, "virsh detach-disk %s %s --persistent"
                 % (srv.instance_name, target))
    say("  virsh detach-disk %s %s --persistent -> rc %d %s" % (
        srv.instance_name, target, out.returncode, out.stdout.strip() or out.stderr.strip()))
    if out.returncode != 0:
        raise lc.LabCloudError("virsh detach-disk failed")


def break_orphan(lab, conn, args):
    """5: the server is deleted while cinder-volume is down: Cinder keeps attachments to it."""
    s = Settings()
    procs.stop_service(s, "cinder-volume", log=say)
    say("  cinder-volume stopped")
    try:
        conn.compute.delete_server(args.server_id)
        lc.wait_until("server %s to be deleted" % args.server_id,
                      lambda: conn.compute.find_server(args.server_id) is None, 180, interval=0.5)
        say("  server %s deleted" % args.server_id)
    finally:
        start_daemon(s, "cinder-volume")
        wait_service_up(s, "volume", 90)
        say("  cinder-volume started again and up")
    for vid in args.volume_ids:
        vol = conn.block_storage.get_volume(vid)
        atts = list(conn.block_storage.attachments(volume_id=vid))
        say("  volume %s: %s, attachments to %s" % (
            vid, vol.status, ", ".join(a.instance for a in atts) or "nothing"))


BREAKS = {
    "cinder-reset": (break_cinder_reset, "server_id volume_id"),
    "backend-down": (break_backend_down, "server_id volume_id"),
    "guest-refuses": (break_guest_refuses, "server_id volume_id"),
    "heal-guest": (break_heal_guest, "volume_id"),
    "wrong-connector": (break_wrong_connector, "path"),
    "hypervisor-only": (break_hypervisor_only, "server_id volume_id"),
    "orphan": (break_orphan, "server_id volume_ids*"),
}


def parser():
    p = argparse.ArgumentParser(prog="lab/cloud", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("server", help="boot a server from a volume, attach data volumes")
    sp.add_argument("name")
    sp.add_argument("--data-volumes", type=int, default=1)
    sp.set_defaults(func=cmd_server)
    sp = sub.add_parser("show", help="Nova, Cinder and hypervisor views of one attachment")
    sp.add_argument("server_id")
    sp.add_argument("volume_id")
    sp.set_defaults(func=cmd_show)
    sp = sub.add_parser("delete", help="delete a server and its data volumes")
    sp.add_argument("server_id")
    sp.add_argument("volume_ids", nargs="*")
    sp.set_defaults(func=cmd_delete)
    bp = sub.add_parser("break", help="break an attachment: " + ", ".join(BREAKS))
    bsub = bp.add_subparsers(dest="kind", required=True)
    for kind, (func, argspec) in BREAKS.items():
        kp = bsub.add_parser(kind, help=func.__doc__)
        for name in argspec.split():
            if name.endswith("*"):
                kp.add_argument(name[:-1], nargs="*")
            else:
                kp.add_argument(name)
        kp.set_defaults(func=func)
    return p


def main(argv):
    args = parser().parse_args(argv)
    lab = lc.load_lab()
    conn = lc.connect(lab)
    if args.command == "break":
        say("break %s:" % args.kind)
    try:
        args.func(lab, conn, args)
    except lc.LabCloudError as exc:
        print("lab/cloud %s failed: %s" % (args.command, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
