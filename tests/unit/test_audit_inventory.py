"""adapters.inventory: the audit's API reads over fake adapters that answer as Nova, Cinder and
Keystone do (pages by limit and marker, next links where the real APIs send them, 403 and 404
as real responses): pagination, the admin check, project look-up, microversions, the deep
tier's 2.89 read."""
import types

import pytest

from dvremedy.adapters import inventory
from dvremedy.errors import CloudError, ConfigError, InputError
from testsupport.audit_fakes import FakeAdapter, pager


def counted(n, prefix="%08d"):
    return [{"id": prefix % i} for i in range(n)]


# -- pagination --------------------------------------------------------------------------------

@pytest.mark.parametrize("total, page_size, pages_expected", [
    (0, 10, 1), (9, 10, 1), (10, 10, 2), (25, 10, 3), (2500, 1000, 3)])
def test_pages_follow_the_next_link_by_marker(total, page_size, pages_expected):
    adapter = FakeAdapter([(r"/servers/detail", pager(counted(total), "servers"))])
    pages = inventory.Pages()
    got = list(inventory.paginate(adapter, "/servers/detail", "servers", {"all_tenants": 1},
                                  page_size, pages, "servers", "2.89"))
    assert [i["id"] for i in got] == ["%08d" % i for i in range(total)]
    assert pages.pages == {"servers": pages_expected} == {"servers": len(adapter.log)}
    assert all(p["limit"] == page_size and p["all_tenants"] == 1 and mv == "2.89"
               for _, p, mv in adapter.log)


def test_a_listing_without_links_goes_on_while_pages_are_full():
    adapter = FakeAdapter([(r"/attachments/detail",
                            pager(counted(20), "attachments", links=False))])
    pages = inventory.Pages()
    got = list(inventory.paginate(adapter, "/attachments/detail", "attachments", {}, 10,
                                  pages, "attachments"))
    assert len(got) == 20 and pages.pages["attachments"] == 3     # the last page is empty


def test_the_page_size_is_capped_at_the_apis_default_max_limit():
    adapter = FakeAdapter([(r"/volumes/detail", pager(counted(3), "volumes"))])
    list(inventory.paginate(adapter, "/volumes/detail", "volumes", {}, 5000,
                            inventory.Pages(), "volumes"))
    assert adapter.log[0][1]["limit"] == inventory.MAX_PAGE


def test_an_api_ignoring_the_marker_cannot_loop_forever():
    same = {"servers": [{"id": "a"}], "servers_links": [{"rel": "next", "href": "x"}]}
    adapter = FakeAdapter([(r"/servers/detail", lambda params, m: (200, same))])
    got = list(inventory.paginate(adapter, "/servers/detail", "servers", {}, 1,
                                  inventory.Pages(), "servers"))
    assert len(got) == 2 and len(adapter.log) == 2


def test_progress_is_told_once_per_page():
    heard = []
    adapter = FakeAdapter([(r"/volumes/detail", pager(counted(5), "volumes"))])
    list(inventory.paginate(adapter, "/volumes/detail", "volumes", {}, 2,
                            inventory.Pages(heard.append), "volumes"))
    assert heard == ["volumes: page 1, 2 item(s) (2 so far)",
                     "volumes: page 2, 2 item(s) (4 so far)",
                     "volumes: page 3, 1 item(s) (5 so far)"]


def test_a_failing_page_is_a_cloud_error_with_its_evidence():
    adapter = FakeAdapter([(r"/volumes/detail",
                            lambda p, m: (500, {"computeFault": {"message": "boom"}}))])
    with pytest.raises(CloudError) as caught:
        list(inventory.paginate(adapter, "/volumes/detail", "volumes", {}, 2,
                                inventory.Pages(), "volumes"))
    evidence = caught.value.evidence()
    assert evidence["http_status"] == 500 and evidence["request_id"] == "req-0123"
    assert "list volumes (page 1)" in evidence["message"]


# -- the admin check, the scope ----------------------------------------------------------------

def conn_with(compute=(), block_storage=(), identity=(), compute_max=(2, 104),
              volume_max=(3, 71)):
    return types.SimpleNamespace(compute=FakeAdapter(list(compute), compute_max),
                                 block_storage=FakeAdapter(list(block_storage), volume_max),
                                 identity=FakeAdapter(list(identity)))


def test_a_member_cloud_is_refused_naming_the_admin_right():
    forbidden = (403, {"forbidden": {"code": 403, "message": "Policy doesn't allow "
                                     "os_compute_api:os-services:list to be performed."}})
    conn = conn_with(compute=[(r"/os-services", lambda p, m: forbidden)])
    with pytest.raises(ConfigError) as caught:
        inventory.compute_hosts(conn, "lab-demo", inventory.Pages())
    message = caught.value.message
    assert "'lab-demo' has no admin rights" in message
    assert "os_compute_api:servers:detail:get_all_tenants" in message
    assert "silently" in message     # why a member's partial listing must not be trusted


def test_compute_hosts_are_the_nova_compute_services():
    services = {"services": [{"host": "cmp1", "state": "up", "status": "enabled"},
                             {"host": "cmp2", "state": "down", "status": "disabled"}]}
    conn = conn_with(compute=[(r"/os-services", lambda p, m: (200, services))])
    assert inventory.compute_hosts(conn, "prod", inventory.Pages()) == {
        "cmp1": {"state": "up", "status": "enabled"},
        "cmp2": {"state": "down", "status": "disabled"}}
    assert conn.compute.log == [("/os-services", {"binary": "nova-compute"}, None)]


PROJECTS = [{"id": "c" * 32, "name": "web", "domain_id": "default"},
            {"id": "d" * 32, "name": "db", "domain_id": "default"},
            {"id": "e" * 32, "name": "db", "domain_id": "other"}]


def keystone():
    def one(params, match):
        found = [p for p in PROJECTS if p["id"] == match.group(1)]
        return (200, {"project": found[0]}) if found else \
            (404, {"error": {"code": 404, "message": "Could not find project"}})

    def by_name(params, match):
        return 200, {"projects": [p for p in PROJECTS if p["name"] == params.get("name")]}
    return conn_with(identity=[(r"/projects/([^/]+)", one), (r"/projects", by_name)])


def test_a_project_is_found_by_id_or_by_name():
    conn = keystone()
    assert inventory.resolve_project(conn, "c" * 32, inventory.Pages())["name"] == "web"
    assert inventory.resolve_project(conn, "web", inventory.Pages())["id"] == "c" * 32
    assert len(conn.identity.log) == 2      # a name is not first tried as an id


@pytest.mark.parametrize("value, text", [
    ("nope", "'nope' does not exist in Keystone"),
    ("f" * 32, "does not exist in Keystone"),
    ("db", "ambiguous: %s (domain default), %s (domain other)" % ("d" * 32, "e" * 32)),
    ("  ", "needs a project"),
])
def test_unknown_or_ambiguous_projects_are_refused(value, text):
    with pytest.raises(InputError) as caught:
        inventory.resolve_project(keystone(), value, inventory.Pages())
    assert text in caught.value.message


@pytest.mark.parametrize("compute_max, volume_max, expected", [
    ((2, 104), (3, 71), {"compute": "2.89", "volume": "3.27", "attachment_records": True,
                         "attachment_ids": True}),
    ((2, 60), (3, 0), {"compute": "2.60", "volume": "3.0", "attachment_records": False,
                       "attachment_ids": False}),
])
def test_microversions_are_the_wanted_ones_or_the_newest_the_cloud_has(compute_max, volume_max,
                                                                       expected):
    conn = conn_with(compute_max=compute_max, volume_max=volume_max)
    assert inventory.microversions(conn) == expected


# -- the fast tier's facts, the deep tier -------------------------------------------------------

def test_server_and_volume_facts_from_the_detail_listings():
    server = {"id": "s1", "name": "web", "tenant_id": "p1", "status": "ACTIVE",
              "OS-EXT-SRV-ATTR:host": "cmp1", "OS-EXT-SRV-ATTR:instance_name": "instance-1",
              "OS-EXT-STS:task_state": None, "updated": "2026-11-25T04:43:44Z",
              "os-extended-volumes:volumes_attached": [{"id": "v1"}, {"id": "v2"}]}
    facts = inventory.server_facts(server)
    assert facts["volume_ids"] == ["v1", "v2"] and facts["compute_host"] == "cmp1"
    assert facts["project_id"] == "p1" and facts["exists"] is True
    volume = {"id": "v1", "status": "in-use", "bootable": "true", "updated_at": "t",
              "os-vol-tenant-attr:tenant_id": "p1",
              "attachments": [{"attachment_id": "a1", "server_id": "s1",
                               "host_name": "cmp1", "device": "/dev/sdb"}]}
    facts = inventory.volume_facts(volume)
    assert facts["bootable"] is True and facts["project_id"] == "p1"
    assert facts["listed_attachments"][0]["id"] == "a1"


def test_the_deep_read_gives_attachment_ids_at_289_and_none_for_a_gone_server():
    rows = {"volumeAttachments": [{"volumeId": "v1", "device": "/dev/sdb",
                                   "attachment_id": "a1", "bdm_uuid": "b1",
                                   "delete_on_termination": False}]}
    conn = conn_with(compute=[
        (r"/servers/s1/os-volume_attachments", lambda p, m: (200, rows)),
        (r"/servers/old/os-volume_attachments",
         lambda p, m: (200, {"volumeAttachments": [{"volumeId": "v1", "device": "/dev/sdb",
                                                    "id": "v1"}]}))])
    pages = inventory.Pages()
    assert inventory.server_attachments(conn, "s1", pages, "2.89") == {"v1": {
        "device": "/dev/sdb", "attachment_id": "a1", "bdm_id": "b1",
        "delete_on_termination": False}}
    assert inventory.server_attachments(conn, "gone", pages, "2.89") is None
    # below 2.89 Nova shows no attachment id: left out, so no mismatch can be made up
    assert "attachment_id" not in inventory.server_attachments(conn, "old", pages,
                                                               "2.60")["v1"]
    assert pages.singles == {"server_attachments": 3} and pages.requests() == 3
