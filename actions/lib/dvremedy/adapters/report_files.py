"""Where the audit's report files go, and how they are written: confined to the report place
(config audit.report_dir, else reports/ in the pack), checked before the audit runs, written
atomically and not world-readable."""
import os
import re
import tempfile

from dvremedy.errors import ConfigError, InputError
from dvremedy.settings import RELOAD

STEP = "audit"
PACK_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "..", "..", ".."))
REPORT_PATH_MAX = 255


def report_paths(report_path, settings, scope_info, now):
    """(json path, table path), confined to the report place: config audit.report_dir, else
    reports/ in the pack. report_path (the action parameter, reachable from chat) is empty, a
    directory or a file name ending in .json (the table beside it, .txt), relative to that
    place or absolute inside it; `..`, a path outside, a symlink at or under the place, a
    directory named .json and control characters are refused with InputError before anything
    is made or written. The place itself is the operator's (a symlinked report_dir is
    followed). Directories are made and checked writable here, before the audit, so a bad path
    costs nothing."""
    if settings.audit_report_dir:
        base, origin = settings.audit_report_dir, "audit.report_dir"
    else:
        base, origin = os.path.join(PACK_DIR, "reports"), "the pack's reports/"
    given_base = os.path.abspath(os.path.expanduser(base))
    base = os.path.realpath(given_base)
    parts, file_name = _report_path_parts(report_path, (base, given_base), origin)
    if file_name is None:
        file_name = "audit-%s-%s.json" % (now.strftime("%Y%m%dT%H%M%SZ"),
                                          _scope_label(scope_info))
    directory = os.path.join(base, *parts)
    json_path = os.path.join(directory, file_name)
    table_path = json_path[:-len(".json")] + ".txt"
    # nothing below the place may be a symlink: every existing directory on the way and both
    # files (os.replace would not follow a link, but a linked directory leads anywhere)
    here = base
    for part in parts:
        here = os.path.join(here, part)
        if os.path.islink(here):
            _refuse(report_path, "%s is a symlink" % here)
        if os.path.lexists(here) and not os.path.isdir(here):
            _refuse(report_path, "%s is not a directory" % here)
    for path in (json_path, table_path):
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            _refuse(report_path, "%s exists and is not a plain file" % path)
    try:
        os.makedirs(base, exist_ok=True)
        here = base
        for part in parts:  # one at a time: a directory made meanwhile is still checked
            here = os.path.join(here, part)
            if not os.path.isdir(here):
                os.mkdir(here, 0o750)
            if os.path.islink(here):
                _refuse(report_path, "%s is a symlink" % here)
        if not os.access(directory, os.W_OK):
            raise OSError("not writable by this user")
    except OSError as exc:
        message = "cannot write the audit report to %s (%s): %s" % (
            directory, "report_path" if parts else origin,
            getattr(exc, "strerror", None) or exc)
        if origin == "audit.report_dir" and not parts:
            raise ConfigError(message + "; fix audit.report_dir: " + RELOAD, step=STEP)
        raise InputError(message, step=STEP)
    return {"json": json_path, "table": table_path}


def _report_path_parts(report_path, bases, origin):
    """report_path -> (directories under the place, file name or None); InputError if it
    would leave the place (`bases`: the place resolved, and as configured)."""
    given = (report_path or "").strip()
    if not given:
        return [], None
    if len(given) > REPORT_PATH_MAX or any(ord(c) < 32 or ord(c) == 127 for c in given):
        _refuse(report_path, "at most %d printable characters" % REPORT_PATH_MAX)
    if "\\" in given or given.startswith("~"):
        _refuse(report_path, "no backslash, no ~")
    if ".." in given.split("/"):
        _refuse(report_path, "no '..'")
    if os.path.isabs(given):
        inside = os.path.normpath(given)
        within = [b for b in bases if inside == b or inside.startswith(b.rstrip("/") + "/")]
        if not within:
            _refuse(report_path, "an absolute path must be inside %s (%s)" % (bases[0], origin))
        given = os.path.relpath(inside, within[0])
    parts = [p for p in given.split("/") if p not in ("", ".")]
    if parts and parts[-1].endswith(".json"):
        if parts[-1] == ".json":
            _refuse(report_path, "the file needs a name before .json")
        return parts[:-1], parts[-1]
    return parts, None


def _refuse(report_path, why):
    raise InputError("cannot write the audit report to report_path %r (refused: %s). Give a "
                     "directory or a file name ending in "
                     ".json under the report place (config audit.report_dir, else reports/ in "
                     "the pack), e.g. nightly/ or nightly/all.json; nothing was written"
                     % (report_path, why), step=STEP)


def _scope_label(scope_info):
    if scope_info["kind"] == "project":
        value = scope_info["project"]
    elif scope_info["kind"] == "host":
        value = scope_info["host"]
    else:
        return "all"
    return "%s-%s" % (scope_info["kind"], re.sub(r"[^A-Za-z0-9_.-]+", "_", value)[:64])


def write_atomically(path, text):
    """path holds text, or is untouched: written beside it, then renamed over it."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".audit-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o640)    # reports name servers, hosts and projects: not world-readable
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
