"""Admitting a remedy run: the hourly cap on automatic remedies and the approval settings.

st2 has no rate-limit policy, so the cap is a counter in the st2 datastore, one key per clock
hour (UTC), that the workflow's first step reads and increments in automatic mode. The
datastore has no compare-and-set: two runs admitted in the same instant may both read the same
count, so the cap is exact only for runs that do not start at the same moment; the concurrency
policy (one remedy per server) and a remedy that plans nothing for a healthy attachment are
the guarantees behind it. A datastore that does not answer closes the gate (fail safe).

`store` is anything with st2's ActionService datastore methods: get_value(name, local=...) and
set_value(name, value, ttl=..., local=...). Nothing here imports st2."""
import datetime

from dvremedy.errors import InputError

STEP = "admit"
MANUAL, AUTOMATIC = "manual", "automatic"
COUNTER_PREFIX = "dangling_volume.automatic_remedies."
COUNTER_TTL_S = 2 * 3600  # outlives its hour, then st2 expires it


def counter_key(now):
    return COUNTER_PREFIX + now.strftime("%Y%m%dT%H")


def decide(mode, count, cap):
    """(admitted, reason) for a run, given the automatic runs already started this hour."""
    if mode == MANUAL:
        return True, "manual run: no cap"
    if cap == 0:
        return False, ("automatic remedies are off (automatic.max_per_hour is 0): run the "
                       "remedy by hand, or raise the cap in the pack config")
    if count >= cap:
        return False, ("hourly cap reached: %d automatic remedies already started this hour "
                       "(automatic.max_per_hour is %d); nothing was changed. Run it by hand, "
                       "or wait for the next hour" % (count, cap))
    return True, "automatic run %d of at most %d this hour" % (count + 1, cap)


def origin(mode, triggered_by, user, execution_id):
    """Who or what started the run: the caller's triggered_by, completed with the st2 user and
    the workflow's execution id (the sensor's rule gives source, event type, message id)."""
    out = dict(triggered_by or {})
    out.setdefault("source", "operator" if mode == MANUAL else "unknown")
    if user:
        out.setdefault("user", user)
    if execution_id:
        out.setdefault("execution_id", execution_id)
    return out


def require_mode(mode, step=STEP):
    """The run's mode, manual or automatic; anything else is refused."""
    if mode not in (MANUAL, AUTOMATIC):
        raise InputError("mode must be manual or automatic, not %r" % (mode,), step=step)
    return mode


def admit(ctx, store, mode, triggered_by=None, user="", execution_id="", now=None):
    require_mode(mode)
    if triggered_by is not None and not isinstance(triggered_by, dict):
        raise InputError("triggered_by must be an object, not %r" % (triggered_by,), step=STEP)
    s = ctx.settings
    started_by = origin(mode, triggered_by, user, execution_id)
    approval = {"required": mode == AUTOMATIC and not s.automatic_pre_approved,
                "route": s.approval_route, "ttl": s.approval_ttl}
    result = {"step": STEP, "changed": False, "mode": mode, "triggered_by": started_by,
              "approval": approval, "cap": s.max_automatic_per_hour}
    if mode == MANUAL:
        admitted, reason = decide(mode, 0, s.max_automatic_per_hour)
        return dict(result, admitted=admitted, did=reason)

    now = now or datetime.datetime.utcnow()
    key = counter_key(now)
    raw = store.get_value(key, local=False)
    try:
        count = int(raw) if raw is not None else 0
    except ValueError:
        count = s.max_automatic_per_hour  # a counter we cannot read counts as full
    admitted, reason = decide(mode, count, s.max_automatic_per_hour)
    if admitted:
        if not store.set_value(key, str(count + 1), ttl=COUNTER_TTL_S, local=False):
            admitted, reason = False, ("the st2 datastore did not take the hourly counter %s: "
                                       "automatic runs stay off until it answers" % key)
        else:
            count += 1
            ctx.progress("admitted: " + reason)
    result.update(admitted=admitted, did=reason, counter=key, count=count,
                  changed=admitted)
    return result
