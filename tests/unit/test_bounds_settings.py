"""Issue 17 settings: controller.owner, Settings.staging_spec() (exactly what
novamanage.refresh takes as staging=), waits.refresh and ssh.connect_retries, and that they
reach the SSH target."""
import pytest

from dvremedy.adapters import novamanage
from dvremedy.errors import ConfigError
from dvremedy.runner import ssh_target
from dvremedy.settings import Settings


def test_the_new_keys_have_their_defaults():
    s = Settings({})
    assert s.controller_owner == "" and s.wait_refresh == 600 and s.ssh_connect_retries == 2


@pytest.mark.parametrize("controller, spec", [
    ({}, None),
    ({"staging": "host", "owner": "nova"}, None),
    ({"staging": "copy_into"}, {"copy_into": {"engine": "docker",
                                              "container": "nova_conductor"}}),
    ({"staging": "copy_into", "container_engine": "podman", "container": "nova_api",
      "container_dir": "/var/tmp", "owner": "nova"},
     {"copy_into": {"engine": "podman", "container": "nova_api", "container_dir": "/var/tmp",
                    "owner": "nova"}}),
    ({"staging": "shared_dir", "shared_dir": "/srv/stage", "container_dir": "/stage",
      "owner": "42436"},
     {"shared_dir": "/srv/stage", "container_dir": "/stage", "owner": "42436"}),
])
def test_staging_spec_is_what_refresh_takes(controller, spec):
    got = Settings({"controller": controller}).staging_spec()
    assert got == spec
    mode = None if spec is None else ("copy_into" if "copy_into" in spec else "shared_dir")
    assert novamanage._staging_spec(got)[0] == mode     # refresh accepts it as is


@pytest.mark.parametrize("owner", ["-R", "a b", "x/y", "nova;id", 42])
def test_a_bad_owner_is_refused_naming_the_key(owner):
    with pytest.raises(ConfigError, match="controller.owner"):
        Settings({"controller": {"owner": owner}})


@pytest.mark.parametrize("config, key", [
    ({"waits": {"refresh": 0}}, "waits.refresh"),
    ({"ssh": {"connect_retries": -1}}, "ssh.connect_retries"),
    ({"ssh": {"connect_retries": True}}, "ssh.connect_retries"),
])
def test_bad_new_values_name_their_key(config, key):
    with pytest.raises(ConfigError, match=key):
        Settings(config)


def test_connect_retries_reach_the_ssh_target():
    s = Settings({"ssh": {"connect_retries": 4, "jump_host": "bastion"}})
    target = ssh_target(s, "cmp1")
    assert target.connect_retries == 4 and target.jump.connect_retries == 0
