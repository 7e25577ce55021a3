"""Pack config into settings (defaults from config.schema.yaml, loud errors naming the key),
parameter validation, and the report a person and a machine read."""
import pytest

from dvremedy.errors import ConfigError, InputError
from dvremedy.model.report import build_report
from dvremedy.settings import Settings, require_uuid


def test_blank_config_gets_the_schema_defaults():
    s = Settings({})
    assert s.ssh_port == 22 and s.ssh_connect_timeout == 10 and s.ssh_command_timeout == 120
    assert s.virsh == ["virsh"] and s.controller_nova_manage == ["nova-manage"]
    assert s.staging == "host" and s.wait_power == 120
    assert s.ssh_command_timeout < 180  # below the get_connector action's timeout


def test_partial_nested_config_keeps_the_other_defaults():
    s = Settings({"ssh": {"user": "ops"}, "hosts": {"address_map": {"cmp1": "10.0.0.1"}}})
    assert s.ssh_user == "ops" and s.ssh_port == 22
    assert s.address_for("cmp1") == "10.0.0.1" and s.address_for("cmp2") == "cmp2"
    assert Settings({"hosts": {"address_template": "{host}.mgmt"}}).address_for("c") == "c.mgmt"


@pytest.mark.parametrize("config, key", [
    ({"api_timeout": 0}, "api_timeout"),
    ({"ssh": {"command_timeout": "soon"}}, "ssh.command_timeout"),
    ({"commands": {"virsh": []}}, "commands.virsh"),
    ({"controller": {"staging": "shared_dir"}}, "controller.shared_dir"),
])
def test_bad_config_names_the_key_and_how_to_reload(config, key):
    with pytest.raises(ConfigError) as exc:
        Settings(config)
    assert key in str(exc.value) and "st2ctl reload --register-configs" in str(exc.value)


def test_missing_cloud_and_ssh_settings_are_named():
    with pytest.raises(ConfigError, match="cloud"):
        Settings({}).cloud_name()
    assert Settings({"cloud": "prod"}).cloud_name("lab") == "lab"
    with pytest.raises(ConfigError, match="ssh.key_file"):
        Settings({}).require_ssh()
    with pytest.raises(ConfigError, match="{nope}"):
        Settings({"hosts": {"address_template": "{nope}"}}).address_for("x")


@pytest.mark.parametrize("bad", ["", "abc", "1111; rm -rf /", "$(reboot)",
                                 "03549f61-9cee-4bdf-b5e9-39c18d815a06 now", None, 42])
def test_uuid_parameters_refuse_anything_else(bad):
    with pytest.raises(InputError, match="must be a UUID"):
        require_uuid("server_id", bad)


def test_uuid_is_canonicalised():
    assert require_uuid("v", " 03549F619CEE4BDFB5E939C18D815A06 ") == \
        "03549f61-9cee-4bdf-b5e9-39c18d815a06"


def test_report_of_a_failure_carries_the_evidence_and_the_advice():
    error = {"result": {"error": {"kind": "nova_manage", "message": "refresh failed: rc 7",
                                  "exit_code": 7, "advice": "run get_connector on cmp1"}},
             "exit_code": 0}
    r = build_report("s", "v", "failed", plan={"class": "nova_only", "problems": ["nova_only"],
                                               "steps": ["stop"]},
                     steps=[{"step": "stop", "changed": True, "did": "stopped", "x": 1}],
                     error=error, failed_step="refresh")
    assert r["error"]["exit_code"] == 7 and r["error"]["step"] == "refresh"
    assert r["steps"] == [{"step": "stop", "changed": True, "did": "stopped",
                           "duration_s": None}]
    assert r["changed_anything"] is True
    assert "FAILED at refresh: refresh failed: rc 7" in r["text"]
    assert "next: run get_connector on cmp1" in r["text"]


def test_report_of_a_dry_run_lists_what_would_run():
    r = build_report("s", "v", "dry run", plan={"steps": ["stop", "refresh"], "reasons": ["x"]},
                     dry_run=True)
    assert r["changed_anything"] is False and r["error"] is None
    assert "would run: stop -> refresh" in r["text"]
