"""WSGI entry points for the lab's API services under gunicorn: `labwsgi:app("keystone")`.

Keystone's and Cinder's WSGI modules parse sys.argv with oslo.config, so under gunicorn they
would see gunicorn's own arguments and the worker would crash-loop. Each factory sets argv and
the config location, then imports the real application. LAB_DIR locates the lab's etc/.
"""
import json
import os
import sys


def _etc(*parts):
    return os.path.join(os.environ["LAB_DIR"], "etc", *parts)


def app(service):
    return _FACTORIES[service]()


def _keystone():
    os.environ["OS_KEYSTONE_CONFIG_DIR"] = _etc("keystone")
    sys.argv = ["keystone-wsgi-public"]
    from keystone.wsgi.api import application
    return application


def _placement():
    os.environ["OS_PLACEMENT_CONFIG_DIR"] = _etc("placement")
    sys.argv = ["placement-api"]
    from placement.wsgi.api import application
    return application


def _nova():
    # nova reads its directory from OS_NOVA_CONFIG_DIR; api-paste.ini must be there, first.
    os.environ["OS_NOVA_CONFIG_DIR"] = _etc("nova")
    sys.argv = ["nova-api"]
    from nova.wsgi.osapi_compute import application
    return application


def _cinder():
    sys.argv = ["cinder-api", "--config-file", _etc("cinder", "cinder.conf")]
    from cinder.wsgi.api import application
    return application


def _neutron():
    return neutron_standin


def neutron_standin(environ, start_response):
    """Read-only stand-in for Neutron: Nova asks it about ports and security groups even for
    servers booted with networks='none'. Every GET answers an empty collection."""
    path = environ.get("PATH_INFO", "/").rstrip("/")
    if environ.get("REQUEST_METHOD") != "GET":
        body, status = {"NeutronError": {"message": "lab stand-in is read-only"}}, "405 Not Allowed"
    elif path in ("", "/"):
        body = {"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]}
        status = "200 OK"
    elif path == "/v2.0":
        body, status = {"resources": []}, "200 OK"
    elif path == "/v2.0/extensions":
        body, status = {"extensions": []}, "200 OK"
    else:
        collection = path.rsplit("/", 1)[-1].split(".")[0].replace("-", "_")
        body, status = {collection: []}, "200 OK"
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]


_FACTORIES = {"keystone": _keystone, "placement": _placement, "nova": _nova,
              "cinder": _cinder, "neutron": _neutron}
