"""Lab services down under the remedy: nova-compute (identify must refuse at once) and
cinder-volume, stopped the moment Nova is asked to detach (the detach wait times out). Each
service is started again, and reported up, whatever the test found."""
from testsupport.faultproxy import Rule

DOWN_WITHIN = 120   # Nova's service_down_time in the lab is its default, 60 s


def test_nova_compute_down(lab, broken, config, lab_services, remedy, contract):
    lab_services.stop("nova-compute")
    lab_services.wait_compute_state("down", DOWN_WITHIN)
    config["waits"] = {"power": 20}    # bounds a run that would try to stop the server anyway
    run = remedy(broken, config)
    c = contract(run)
    c.ended_unchanged_at("identify")
    c.left_off(False)
    c.message_has("nova-compute", "down")
    c.check()


def test_cinder_volume_down_during_detach(broken, config, api_proxies, lab_services, remedy,
                                          contract):
    nova, _cinder = api_proxies
    vid = broken["volume_ids"][0]
    config["waits"] = {"detach": 12}   # a detach takes ~2 s on the lab
    nova.add(Rule("DELETE", r"/os-volume_attachments/%s$" % vid, action="pass",
                  hook=lambda request: lab_services.stop("cinder-volume")))
    run = remedy(broken, config)
    assert lab_services.stopped == ["cinder-volume"], nova.requests
    c = contract(run)
    c.failed_at("detach")
    c.server("ACTIVE")
    c.left_off(False)
    c.message_has("timed out")
    c.check()
