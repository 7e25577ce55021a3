"""Seed Keystone after bootstrap: service users, the catalog, a demo project, a flavor.

Run by lab/up with the lab venv's Python: `seed.py keystone|compute <lab.json> <secrets.json>`.
"""
import json
import sys

import openstack


def main(mode, lab_json, secrets_json):
    lab = json.load(open(lab_json))
    if mode == "compute":
        return seed_compute(openstack.connect(cloud="lab-admin"))
    pw = json.load(open(secrets_json))
    conn = openstack.connect(cloud="lab-admin")
    idp = conn.identity
    ports = lab["ports"]
    base = "http://127.0.0.1:%d"

    def role(name):
        return idp.find_role(name) or idp.create_role(name=name)

    admin, service_role, member = role("admin"), role("service"), role("member")
    default = idp.find_domain("default")
    service = (idp.find_project("service", domain_id=default.id) or
               idp.create_project(name="service", domain_id=default.id))
    demo = (idp.find_project("demo", domain_id=default.id) or
            idp.create_project(name="demo", domain_id=default.id))
    for name in ("nova", "placement", "cinder"):
        user = idp.find_user(name, domain_id=default.id) or idp.create_user(
            name=name, password=pw[name], domain_id=default.id, default_project_id=service.id)
        for r in (admin, service_role):
            idp.assign_project_role_to_user(service, user, r)
    demo_user = idp.find_user("demo", domain_id=default.id) or idp.create_user(
        name="demo", password=pw["demo"], domain_id=default.id, default_project_id=demo.id)
    idp.assign_project_role_to_user(demo, demo_user, member)

    catalog = [
        ("placement", "placement", base % ports["placement"]),
        ("nova", "compute", base % ports["nova-api"] + "/v2.1"),
        ("cinderv3", "volumev3", base % ports["cinder-api"] + "/v3/$(project_id)s"),
        ("cinder", "block-storage", base % ports["cinder-api"] + "/v3/$(project_id)s"),
        ("neutron", "network", base % ports["neutron-standin"]),
    ]
    for name, stype, url in catalog:
        svc = next(iter(idp.services(type=stype)), None) or idp.create_service(
            name=name, type=stype)
        for interface in ("public", "internal", "admin"):
            if not list(idp.endpoints(service_id=svc.id, interface=interface)):
                idp.create_endpoint(service_id=svc.id, interface=interface, url=url,
                                    region_id=lab["region"])
    print("seeded: users nova, placement, cinder, demo; catalog %s"
          % ", ".join(t for _n, t, _u in catalog))


def seed_compute(conn):
    """What needs nova-api: the lab's flavor."""
    if not conn.compute.find_flavor("lab.tiny"):
        conn.compute.create_flavor(name="lab.tiny", vcpus=1, ram=512, disk=0, is_public=True)
    print("seeded: flavor lab.tiny")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
