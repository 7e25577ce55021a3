"""SSH faults under the remedy: the connection to the hypervisor cut while get_connector's
nova-manage runs, the one to the controller cut while refresh's nova-manage runs, and a
hypervisor whose sshd cannot be reached at all."""
import time

from testsupport.faultproxy import Cut

NOTHING_LISTENS = "127.0.0.14"   # a loopback address where no sshd runs
# seconds without a byte on the connection: a remote command is running (nova-manage takes
# 3-8 s; identify's virsh reads answer well within this)
QUIET = 1.5


def test_ssh_cut_during_get_connector(lab, broken, config, ssh_forwarder, remedy, contract):
    """The hypervisor's connection number 2 (identify's is 1) is cut once quiet: get_connector's
    nova-manage is running. Before anything changed: the server stays ACTIVE, nothing changed."""
    proxy = ssh_forwarder(lab["compute_host"], {2: Cut(when_idle=QUIET)})
    run = remedy(broken, config)
    assert [c.index for c in proxy.cuts()] == [2], (proxy.connections, run.explain())
    c = contract(run)
    c.ended_unchanged_at("get_connector")
    c.left_off(False)
    c.evidence(host=lab["compute_host"])
    c.message_has(lab["compute_host"], "connection")   # the fault: the connection broke
    c.check()


def test_ssh_cut_during_refresh(lab, conn, broken, config, ssh_forwarder, remedy,
                                contract):
    """The controller's connection is cut while refresh's nova-manage runs: refresh was
    started, its outcome is unknown, so the server is left SHUTOFF with what to do next."""
    proxy = ssh_forwarder(lab["controller_host"], {1: Cut(when_idle=QUIET)})
    run = remedy(broken, config)
    assert [c.index for c in proxy.cuts()] == [1], (proxy.connections, run.explain())
    c = contract(run)
    c.failed_at("refresh")
    # nova-manage goes on without its connection and holds the instance lock until it ends:
    # the lock is as found once it has (README, the fault table)
    c.server("SHUTOFF", lock_checked_by_caller=True)
    settled = _lock_settles(conn, broken["server_id"], run.lock_before, 30)
    c.expect(settled is not None, "the lock is still %r 30 s after the run" % (
        not run.lock_before,))
    c.left_off(True)
    c.evidence(host=lab["controller_host"])
    c.message_has(lab["controller_host"], "connection")
    c.check()


def test_sshd_unreachable(lab, broken, config, remedy, contract):
    """The hypervisor's SSH address answers nothing: identify cannot read the domain and
    refuses before anything changes."""
    config["hosts"]["address_map"][lab["compute_host"]] = NOTHING_LISTENS
    run = remedy(broken, config)
    c = contract(run)
    c.ended_unchanged_at("identify")
    c.left_off(False)
    c.evidence(host=lab["compute_host"])
    c.message_has(lab["compute_host"], NOTHING_LISTENS)
    c.check()


def _lock_settles(conn, server_id, want, within):
    """Seconds until the server's lock is `want`, or None if it is not within `within` s."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if conn.compute.get_server(server_id).is_locked == want:
            return time.monotonic() - started
        time.sleep(1)
    return None
