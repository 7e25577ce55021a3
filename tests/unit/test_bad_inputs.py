"""Issue 17, the unit half: a TABLE of bad inputs to the remedy workflow and the single actions,
each refused with an error that names what is wrong, and nothing changed.

Each row: how the input arrives, the input, and the substrings the error must hold. Three ways
in, all without the lab:
- `step`: the pack's real step through dvremedy.runner.run_step (what every action runs), its
  cloud and SSH access routed to testsupport.badinputs.FakeCloud, a recording fake of the three
  views (Nova, Cinder, the hypervisor);
- `remedy`: the real remedy workflow (st2local, orquesta at st2's pin) whose identify action is
  the real step on the same fake; every other cloud-facing action records that it ran;
- `request`: st2's own request creation (st2local): a parameter that fails its `pattern` is
  refused before any action runs (the API renders a live request's Jinja markers first).
After each row: the fake's three views are as before and it recorded no mutating call (no
Compute/Block Storage call that is not a read, no remote command but a read); a refused remedy
ran identify (or nothing) and no action that changes anything (stop, refresh, detach, the power
restore)."""
import inspect
import json

import pytest

import st2local
from st2local import py_result

from testsupport.badinputs import (BOOT_A, CONTROLLER, DATA_A, DATA_B, FREE, HOST, MISSING,
                                   SERVER_A, SERVER_B, STALE_A, UNIT_CONFIG, FakeCloud, install,
                                   merged)
from testsupport.labchecks import MALFORMED
from testsupport.workflows import P, REPO

from dvremedy.errors import ConfigError
from dvremedy.runner import run_step
from dvremedy.settings import Settings
from dvremedy.steps import remedy as remedy_steps

GOOD_CONNECTOR = {"host": HOST, "platform": "x86_64", "os_type": "linux", "ip": "10.0.0.11",
                  "multipath": False, "initiator": "iqn.2004-10.com.fake:cmp1"}
HELD_BY_B = "held by server %s" % SERVER_B


def step(name, expected, config=None, **params):
    return ("step", (name, params, config or {}), expected)


def remedy(expected, config=None, **params):
    return ("remedy", (params, config or {}), expected)


def request(ref, expected, **params):
    return ("request", (ref, params), expected)


def config_row(changes, key):
    """A pack config value out of range: Settings names the key; the action (stop_server, the
    first that would change something) stops before any call."""
    return step("stop_server", [key], config=changes, server_id=SERVER_A)


ROWS = [
    # -- ids that do not name what they must ---------------------------------------------------
    pytest.param(*step("identify", ["does not exist"], server_id=MISSING, volume_id=DATA_A),
                 id="identify-unknown-server"),
    pytest.param(*step("identify", ["does not exist"], server_id=SERVER_A, volume_id=MISSING),
                 id="identify-unknown-volume"),
    pytest.param(*step("identify", ["not attached"], server_id=SERVER_A, volume_id=FREE),
                 id="identify-volume-not-attached"),
    pytest.param(*step("identify", ["boot volume"], server_id=SERVER_A, volume_id=BOOT_A),
                 id="identify-boot-volume"),
    # B's healthy volume, asked for A: in no view of A (the held-by check below is for a
    # volume A's Nova still maps)
    pytest.param(*step("identify", ["not attached to server %s" % SERVER_A],
                       server_id=SERVER_A, volume_id=DATA_B),
                 id="identify-another-servers-volume"),
    pytest.param(*step("identify", [HELD_BY_B, "operator"], server_id=SERVER_A,
                       volume_id=STALE_A), id="identify-volume-held-by-second-server"),
    pytest.param(*step("stop_server", ["does not exist"], server_id=MISSING),
                 id="stop_server-unknown-server"),
    pytest.param(*step("detach", ["does not exist"], server_id=SERVER_A, volume_id=MISSING),
                 id="detach-unknown-volume"),
    pytest.param(*step("detach", ["must be a UUID"], server_id="1111; reboot",
                       volume_id=DATA_A), id="detach-malformed-server-id"),
    pytest.param(*step("get_connector", ["must be a UUID"], server_id="$(touch /tmp/pwned)"),
                 id="get_connector-malformed-server-id"),
    pytest.param(*step("libvirt_detach", ["last resort"], server_id=SERVER_A, volume_id=DATA_A),
                 id="libvirt_detach-not-allowed"),
    pytest.param(*step("restore_power", ["power must be running or shutoff"],
                       server_id=SERVER_A, power="hibernate"), id="restore_power-bad-power"),
    # -- connectors --------------------------------------------------------------------------
    pytest.param(*step("refresh", ["connector lacks", "platform"], server_id=SERVER_A,
                       volume_id=DATA_A, connector={"host": HOST}),
                 id="refresh-connector-lacking-keys"),
    pytest.param(*step("refresh", ["rc 7", "Run get_connector on"], server_id=SERVER_A,
                       volume_id=DATA_A, connector=dict(GOOD_CONNECTOR, host=CONTROLLER)),
                 id="refresh-connector-from-wrong-host"),
    pytest.param(*step("refresh", ["must be a JSON object"], server_id=SERVER_A,
                       volume_id=DATA_A, connector="{not json"), id="refresh-connector-not-object"),
    pytest.param(*step("refresh", ["'multipath' must be true or false"], server_id=SERVER_A,
                       volume_id=DATA_A, connector=dict(GOOD_CONNECTOR, multipath="yes")),
                 id="refresh-connector-multipath-not-boolean"),
    pytest.param(*step("refresh", ["'host' must be a non-empty string"], server_id=SERVER_A,
                       volume_id=DATA_A, connector=dict(GOOD_CONNECTOR, host="")),
                 id="refresh-connector-empty-host"),
    # -- the pack config out of range ----------------------------------------------------------
    pytest.param(*config_row({"api_timeout": 0}, "api_timeout"), id="config-api_timeout-0"),
    pytest.param(*config_row({"waits": {"power": -1}}, "waits.power"),
                 id="config-waits.power-negative"),
    pytest.param(*config_row({"waits": {"detach": "soon"}}, "waits.detach"),
                 id="config-waits.detach-not-a-number"),
    pytest.param(*config_row({"ssh": {"port": "x"}}, "ssh.port"), id="config-ssh.port-x"),
    pytest.param(*config_row({"ssh": {"port": 70000}}, "ssh.port"), id="config-ssh.port-70000"),
    pytest.param(*config_row({"ssh": {"connect_timeout": 0}}, "ssh.connect_timeout"),
                 id="config-ssh.connect_timeout-0"),
    pytest.param(*config_row({"automatic": {"max_per_hour": -1}}, "automatic.max_per_hour"),
                 id="config-automatic.max_per_hour-negative"),
    pytest.param(*config_row({"audit": {"page_size": 0}}, "audit.page_size"),
                 id="config-audit.page_size-0"),
    pytest.param(*config_row({"commands": {"virsh": []}}, "commands.virsh"),
                 id="config-commands.virsh-empty"),
    pytest.param(*config_row({"controller": {"staging": "shared_dir"}},
                             "controller.shared_dir"), id="config-shared_dir-staging-no-dirs"),
    pytest.param(*config_row({"audit": {"report_dir": "reports"}}, "audit.report_dir"),
                 id="config-audit.report_dir-relative"),
    pytest.param(*step("get_connector", ["hosts.address_template"], server_id=SERVER_A,
                       config={"hosts": {"address_template": "{hostname}.mgmt"}}),
                 id="config-address_template-unknown-field"),
    # -- the remedy workflow, its identify on the fake ------------------------------------------
    pytest.param(*remedy(["does not exist"], server_id=MISSING, volume_id=DATA_A),
                 id="remedy-unknown-server"),
    pytest.param(*remedy(["does not exist"], server_id=SERVER_A, volume_id=MISSING),
                 id="remedy-unknown-volume"),
    pytest.param(*remedy(["not attached"], server_id=SERVER_A, volume_id=FREE),
                 id="remedy-volume-not-attached"),
    pytest.param(*remedy(["boot volume"], server_id=SERVER_A, volume_id=BOOT_A),
                 id="remedy-boot-volume"),
    pytest.param(*remedy([HELD_BY_B, "operator"], server_id=SERVER_A, volume_id=STALE_A),
                 id="remedy-volume-held-by-second-server"),
    pytest.param(*remedy(["api_timeout"], config={"api_timeout": 0}, server_id=SERVER_A,
                         volume_id=DATA_A), id="remedy-config-api_timeout-0"),
    # -- refused by st2 when it creates the request (the parameter's pattern) --------------------
] + [
    pytest.param(*request("remedy", [bad, "does not match"], server_id=bad,
                          volume_id=DATA_A), id="request-remedy-malformed-server-id-%d" % i)
    for i, bad in enumerate(MALFORMED)
] + [
    pytest.param(*request("remedy", ["'%s' does not match" % MALFORMED[0]], server_id=SERVER_A,
                          volume_id=MALFORMED[0]), id="request-remedy-malformed-volume-id"),
    # a live request is rendered first: the marker's text (here protected by raw) is refused
    pytest.param(*request("remedy", ["'{{ st2kv.system.x }}' does not match"],
                          server_id=SERVER_A,
                          volume_id="{% raw %}{{ st2kv.system.x }}{% endraw %}"),
                 id="request-remedy-jinja-marker-in-volume-id"),
    # ... or rendered, and what it renders to is refused
    pytest.param(*request("refresh", ["'49' does not match"], server_id="{{ 7 * 7 }}",
                          volume_id=DATA_A, connector=GOOD_CONNECTOR),
                 id="request-refresh-jinja-expression-as-server-id"),
    pytest.param(*request("stop_server", ["'' does not match"],
                          server_id="{{ st2kv.system.nothing_here }}"),
                 id="request-stop_server-jinja-datastore-as-server-id"),
    pytest.param(*request("remedy", ["'lab; reboot' does not match"], server_id=SERVER_A,
                          volume_id=DATA_A, cloud="lab; reboot"), id="request-remedy-bad-cloud"),
    pytest.param(*request("detach", ["'%s' does not match" % MALFORMED[3]], server_id=SERVER_A,
                          volume_id=MALFORMED[3]), id="request-detach-id-with-shell-tail"),
]

# every action of the remedy a refused run must not reach (identify may run; the report runs
# for real: it is pure)
CLOUD_ACTIONS = ["admit", "stop_server", "get_connector", "refresh", "detach", "verify",
                 "libvirt_detach", "restore_power"]


@pytest.fixture
def cloud(monkeypatch):
    fake = FakeCloud()
    install(monkeypatch, fake)
    return fake


def _refused_step(fake, name, params, changes):
    config = merged(UNIT_CONFIG, changes)
    try:
        ok, result = run_step(config, getattr(remedy_steps, name), **params)
    except Exception as exc:  # not a typed error: the action would crash with a traceback
        return "escaped %s: %s" % (type(exc).__name__, exc)
    assert not ok, "accepted: %s" % json.dumps(result)[:1500]
    return json.dumps(result["error"])


def _refused_remedy(fake, params, changes):
    config = merged(UNIT_CONFIG, changes)
    ran = []

    def identify(p):
        accepted = inspect.signature(remedy_steps.identify).parameters
        kw = {k: v for k, v in p.items() if k in accepted and k != "ctx" and k != "cloud"}
        ok, result = run_step(config, remedy_steps.identify, cloud=p.get("cloud") or None, **kw)
        return py_result(result, status="succeeded" if ok else "failed")

    def recorder(name):
        def executor(p):
            ran.append(name)
            return py_result({"error": {"kind": "test", "message": name + " must not run"}},
                             status="failed")
        return executor
    executors = {P + name: recorder(name) for name in CLOUD_ACTIONS}
    executors[P + "identify"] = identify
    execution = st2local.run_action(REPO, P + "remedy", params, executors=executors,
                                    progress=None, config=config)
    report = (execution["result"].get("output") or {}).get("report")
    assert execution["status"] == "failed", json.dumps(report or execution["result"])[:1500]
    assert ran == [], "a refused remedy ran %s" % ran
    assert [t["id"] for t in execution["tasks"]] == ["identify", "report_failure"]
    # the step that refused (the report's failed_step where it has one, else its error's step)
    assert report.get("failed_step", report["error"].get("step")) == "identify", report["error"]
    assert report["changed_anything"] is False and report["steps"] == []
    return json.dumps(report["error"])


def _refused_request(fake, ref, params):
    ran = []

    def recorder(p, name):
        ran.append(name)
        return py_result({})
    executors = {P + name: (lambda p, name=name: recorder(p, name))
                 for name in CLOUD_ACTIONS + ["identify", "report"]}
    execution = st2local.run_action(REPO, P + ref, params, executors=executors, progress=None,
                                    config=UNIT_CONFIG)
    assert execution["status"] == "failed" and not execution.get("tasks"), execution
    assert ran == [], "st2 ran %s" % ran
    return json.dumps(execution["result"])


@pytest.mark.parametrize("via, given, expected", ROWS)
def test_bad_input_is_refused_naming_what_is_wrong_and_changes_nothing(cloud, via, given,
                                                                       expected):
    before = cloud.views()
    if via == "step":
        name, params, changes = given
        message = _refused_step(cloud, name, params, changes)
    elif via == "remedy":
        message = _refused_remedy(cloud, *given)
    else:
        message = _refused_request(cloud, *given)
    for text in expected:
        assert text in message, "%r not in the error: %s" % (text, message[:1500])
    assert cloud.mutations() == []
    assert cloud.views() == before
    if via == "step" and given[2]:
        # the same config through Settings alone: a ConfigError naming the key
        with pytest.raises(ConfigError) as exc:
            Settings(merged(UNIT_CONFIG, given[2])).address_for(HOST)
        assert expected[0] in exc.value.message


def test_the_table_is_wide_enough():
    """Issue 17: at least 20 distinct bad inputs (the lab half adds its own)."""
    assert len({r.id for r in ROWS}) == len(ROWS) >= 20


def test_the_fake_sees_a_mutation():
    """The recording fake would catch a change: a healthy detach through the same path is
    recorded as a mutating call (so an empty list above means something)."""
    fake = FakeCloud()
    mp = pytest.MonkeyPatch()
    try:
        install(mp, fake)
        run_step(merged(UNIT_CONFIG, {"waits": {"detach": 0.01}}), remedy_steps.detach,
                 server_id=SERVER_A, volume_id=DATA_A)
    finally:
        mp.undo()
    assert [c[1] for c in fake.mutations()] == ["delete_volume_attachment"]
