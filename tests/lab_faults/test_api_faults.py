"""API faults under the remedy, injected by HTTP proxies in front of nova-api and cinder-api
(testsupport.faultproxy; the pack's clouds.yaml copy points its endpoints at them): one kind
of request answered 5xx, or never answered (api_timeout decides)."""
from testsupport.faultproxy import Rule

API_TIMEOUT = 5


def _stop_rule(sid, **how):
    return Rule("POST", r"/servers/%s/action$" % sid, body=r"os-stop", times=1, **how)


def test_nova_500_on_stop(broken, config, api_proxies, remedy, contract):
    nova, _cinder = api_proxies
    nova.add(_stop_rule(broken["server_id"], status=500))
    run = remedy(broken, config)
    assert [r.outcome for r in nova.hits()] == ["answered 500"]
    c = contract(run)
    c.ended_unchanged_at("stop_server")
    c.left_off(False)
    c.evidence(http_status=500)
    c.message_has("500")
    c.check()


def test_nova_hangs_on_stop(broken, config, api_proxies, remedy, contract):
    nova, _cinder = api_proxies
    config["api_timeout"] = API_TIMEOUT
    nova.add(_stop_rule(broken["server_id"], action="hang"))
    run = remedy(broken, config)
    assert [r.outcome for r in nova.hits()] == ["hung"]
    c = contract(run)
    c.ended_unchanged_at("stop_server")
    c.left_off(False)
    c.message_has("timed out")
    c.check()


def test_nova_503_on_volume_attachments(broken, config, api_proxies, remedy, contract):
    """Nova's attachment list fails: identify cannot see Nova's view and refuses."""
    nova, _cinder = api_proxies
    nova.add(Rule("GET", r"/servers/%s/os-volume_attachments" % broken["server_id"],
                  status=503))
    run = remedy(broken, config)
    assert nova.hits(), nova.requests
    c = contract(run)
    c.ended_unchanged_at("identify")
    c.evidence(http_status=503)
    c.message_has("503")
    c.check()


def test_nova_500_on_detach(broken, config, api_proxies, remedy, contract):
    """The Compute API detach answers 500 after the refresh: power is restored."""
    nova, _cinder = api_proxies
    vid = broken["volume_ids"][0]
    nova.add(Rule("DELETE", r"/os-volume_attachments/%s$" % vid, status=500))
    run = remedy(broken, config)
    assert [r.outcome for r in nova.hits()] == ["answered 500"]
    c = contract(run)
    c.failed_at("detach")
    c.server("ACTIVE")
    c.left_off(False)
    c.evidence(http_status=500)
    c.message_has("500")
    c.check()


def test_cinder_503_on_attachments(broken, config, api_proxies, remedy, contract):
    """Cinder's attachment records cannot be read: identify refuses."""
    _nova, cinder = api_proxies
    cinder.add(Rule("GET", r"/attachments/detail\?", status=503))
    run = remedy(broken, config)
    assert cinder.hits(), cinder.requests
    c = contract(run)
    c.ended_unchanged_at("identify")
    c.evidence(http_status=503)
    c.message_has("503")
    c.check()


def test_cinder_hangs_on_attachments(broken, config, api_proxies, remedy, contract):
    """Cinder never answers for the attachment records: identify times out (api_timeout) and
    refuses. (A hang after the stop costs a whole run more; the detach path's timeout is
    test_service_faults' cinder-volume case, its 5xx test_nova_500_on_detach.)"""
    _nova, cinder = api_proxies
    config["api_timeout"] = API_TIMEOUT
    cinder.add(Rule("GET", r"/attachments/detail\?", action="hang"))
    run = remedy(broken, config)
    assert [r.outcome for r in cinder.hits()] == ["hung"], cinder.requests
    c = contract(run)
    c.ended_unchanged_at("identify")
    c.left_off(False)
    c.message_has("timed out")
    c.check()
