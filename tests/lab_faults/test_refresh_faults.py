"""refresh failing once nova-manage refresh was started: the server is left SHUTOFF on
purpose (starting it could attach a half-refreshed volume), and the report says why and what
to run next."""


def test_refresh_exits_non_zero(lab, broken, config, remedy, contract):
    config["commands"] = {"controller_nova_manage": ["sh", "-c", "exit 1", "nova-manage"]}
    run = remedy(broken, config)
    c = contract(run)
    c.failed_at("refresh")
    c.server("SHUTOFF")
    c.left_off(True)
    c.evidence(host=lab["controller_host"], exit_code=1)
    c.message_has("exited 1")
    c.check()


def test_refresh_times_out(lab, broken, config, remedy, contract):
    """refresh still running at waits.refresh: it is never killed (it holds the instance lock),
    the server is left SHUTOFF."""
    config["waits"] = {"refresh": 10}
    config["commands"] = {"controller_nova_manage": ["sh", "-c", "sleep 20", "nova-manage"]}
    run = remedy(broken, config)
    c = contract(run)
    c.failed_at("refresh")
    c.server("SHUTOFF")
    c.left_off(True)
    c.evidence(host=lab["controller_host"])
    c.message_has("timed out")
    c.check()
