"""The OpenStack side: a connection by clouds.yaml name, API errors translated into typed errors
carrying HTTP status and request id, and waits that have a deadline and a failure set.
openstacksdk is imported lazily: an action that fails on its input never pays for it."""
import contextlib
import re
import time

from dvremedy.errors import CloudError, ConfigError, NotFound, StateError, WaitTimeout

POLL_INTERVAL = 0.25  # waits wake well within half a second of a state change


def connect(settings, cloud=None):
    """An openstacksdk Connection for the named cloud, every request bounded by api_timeout.
    The bound goes into the cloud region: Connection(config=...) ignores its own api_timeout.
    connect_retries=0: a timed-out POST (stop, detach) must not be sent twice, and the
    budget (dvremedy.budget) counts one api_timeout per request."""
    import openstack
    import openstack.config
    name = settings.cloud_name(cloud)
    files = [settings.clouds_yaml] if settings.clouds_yaml else None
    try:
        loader = openstack.config.OpenStackConfig(config_files=files, load_envvars=False)
        region = loader.get_one(cloud=name, api_timeout=settings.api_timeout,
                                connect_retries=0)
    except openstack.exceptions.ConfigException as exc:
        raise ConfigError("cloud %r: %s (clouds.yaml %s)" % (
            name, exc, settings.clouds_yaml or "from openstacksdk's default places"))
    return openstack.connection.Connection(config=region, app_name="dangling_volume")


@contextlib.contextmanager
def api(what, step=None):
    """Translate openstacksdk failures of one call into NotFound / CloudError with evidence."""
    from openstack import exceptions as osx
    try:
        yield
    except osx.NotFoundException as exc:
        raise NotFound("%s: not found (HTTP 404): it does not exist (or this account cannot "
                       "see it)" % what, step=step, **_http_evidence(exc))
    except osx.HttpException as exc:
        raise CloudError("%s failed: HTTP %s: %s" % (what, exc.status_code, _details(exc)),
                         step=step, **_http_evidence(exc))
    except osx.SDKException as exc:
        raise CloudError("%s failed: %s" % (what, exc), step=step)
    except Exception as exc:    # keystoneauth1's own errors are not SDKExceptions
        if not _is_keystoneauth(exc):
            raise
        raise _transport_error(what, step, exc)


def _is_keystoneauth(exc):
    from keystoneauth1 import exceptions as ksa
    return isinstance(exc, ksa.ClientException)


def _transport_error(what, step, exc):
    """A request that got no HTTP answer (openstacksdk lets keystoneauth1 raise it as is):
    ConnectTimeout for a connect or read timeout, ConnectFailure for refused or reset,
    DiscoveryFailure when version discovery got no answer. keystoneauth1's HTTP errors
    (RequestTimeout, ...) reach us only from authentication: openstacksdk reads replies
    itself (raise_exc=False), so those arrive as HttpException above."""
    from keystoneauth1 import exceptions as ksa
    evidence = _request_evidence(exc)
    if isinstance(exc, ksa.ConnectTimeout):
        seconds = _timeout_of(exc)
        return CloudError("%s timed out after %s s (api_timeout) with no answer from %s" % (
            what, seconds or "api_timeout", evidence.get("url") or "the API"),
            step=step, timed_out=True, **evidence)
    if isinstance(exc, ksa.ConnectionError):
        return CloudError("%s could not connect: %s" % (what, exc), step=step,
                          connect_failed=True, **evidence)
    if isinstance(exc, ksa.DiscoveryFailure):
        return CloudError("%s failed: %s (the endpoint gave no version document within "
                          "api_timeout, or is wrong in the catalog / clouds.yaml)" % (what, exc),
                          step=step, **evidence)
    return CloudError("%s failed: %s" % (what, exc), step=step, **evidence)


_URL_IN_MESSAGE = re.compile(r"(?:to|at) (https?://\S+?)[,:]?(?:\s|$)")
_TIMEOUT_IN_MESSAGE = re.compile(r"timeout=([0-9.]+)")


def _request_evidence(exc):
    """method and url of the request behind a keystoneauth1 error: requests' exception,
    raised inside keystoneauth1's except clause, is its __context__."""
    request = getattr(exc.__context__, "request", None)
    url = getattr(request, "url", None)
    if not url:
        found = _URL_IN_MESSAGE.search(str(exc))
        url = found.group(1) if found else None
    return {"method": getattr(request, "method", None), "url": url}


def _timeout_of(exc):
    found = _TIMEOUT_IN_MESSAGE.search(str(exc.__context__ or ""))
    return ("%g" % float(found.group(1))) if found else None


def _details(exc):
    return getattr(exc, "details", None) or str(exc)


def _http_evidence(exc):
    response = getattr(exc, "response", None)
    request = getattr(response, "request", None)
    return {"http_status": getattr(exc, "status_code", None),
            "request_id": getattr(exc, "request_id", None),
            "method": getattr(request, "method", None),
            "url": getattr(exc, "url", None) or getattr(request, "url", None)}


def wait_for(what, probe, timeout, step=None, progress=None, interval=POLL_INTERVAL,
             clock=time.monotonic, sleep=time.sleep):
    """Poll probe() -> (state, done, failed) until done; a failure state or the deadline raises.
    progress(message) hears every change of state, so long waits show where they are."""
    deadline = clock() + timeout
    start = clock()
    last = None
    while True:
        state, done, failed = probe()
        if state != last and progress:
            progress("%s: %s after %.1f s" % (what, state, clock() - start))
        last = state
        if failed:
            raise StateError("%s: reached %s" % (what, state), step=step, state=state)
        if done:
            return state
        if clock() >= deadline:
            raise WaitTimeout("timed out after %d s waiting for %s: still %s" % (
                timeout, what, state), step=step, state=state, timeout_s=timeout)
        sleep(interval)


def server_state(conn, server_id):
    with api("GET server %s" % server_id):
        return conn.compute.get_server(server_id)


def wait_server(conn, server_id, status, timeout, step=None, progress=None):
    """Until the server has `status` (ACTIVE or SHUTOFF) with no task running; ERROR fails."""
    def probe():
        srv = server_state(conn, server_id)
        state = srv.status + ("/" + srv.task_state if srv.task_state else "")
        return state, srv.status == status and not srv.task_state, srv.status == "ERROR"
    return wait_for("server %s to be %s" % (server_id, status), probe, timeout, step, progress)


def wait_volume(conn, volume_id, status, timeout, step=None, progress=None,
                failures=("error", "error_detaching", "error_attaching")):
    def probe():
        with api("GET volume %s" % volume_id):
            vol = conn.block_storage.get_volume(volume_id)
        return vol.status, vol.status == status, vol.status in failures
    return wait_for("volume %s to be %s" % (volume_id, status), probe, timeout, step, progress)
