"""The lab hypervisor's domain files, shared by the driver (labdriver.py, in nova-compute) and
the virsh stand-in (virsh.py): one JSON file per instance in $LAB_DIR/state/domains, edited
under one lock and replaced atomically, read on every call (see labdriver.py for the format)."""
import contextlib
import datetime
import fcntl
import json
import os
import tempfile


class LabDirMissing(RuntimeError):
    """LAB_DIR is not set: the lab sets it for nova-compute and in the virsh wrapper."""


def domains_dir():
    lab = os.environ.get('LAB_DIR')
    if not lab:
        raise LabDirMissing('LAB_DIR is not set: the domain files live in $LAB_DIR/state/domains')
    return os.path.join(lab, 'state', 'domains')


def domain_path(uuid):
    return os.path.join(domains_dir(), '%s.json' % uuid)


def read_domain(uuid):
    try:
        with open(domain_path(uuid)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def all_domains():
    """Every readable domain file, by file name."""
    try:
        entries = sorted(os.listdir(domains_dir()))
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        if entry.startswith('.') or not entry.endswith('.json'):
            continue
        try:
            dom = read_domain(entry[:-len('.json')])
        except (OSError, ValueError):
            continue
        if isinstance(dom, dict) and dom.get('uuid') and dom.get('name'):
            out.append(dom)
    return out


@contextlib.contextmanager
def locked():
    """Hold the one lock every writer (driver, virsh, tests) takes for an edit."""
    os.makedirs(domains_dir(), exist_ok=True)
    with open(os.path.join(domains_dir(), '.lock'), 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_domain(dom, event):
    """Write dom (with the lock held): temp file in the same directory, then rename. Keys
    starting with '_' are the reader's own annotations and are not stored."""
    dom = {k: v for k, v in dom.items() if not k.startswith('_')}
    dom['last_event'] = event
    dom['updated_at'] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec='milliseconds')
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % dom['uuid'], suffix='.tmp', dir=domains_dir())
    try:
        os.fchmod(fd, 0o644)    # mkstemp makes 0600; readers may be other users
        with os.fdopen(fd, 'w') as f:
            json.dump(dom, f, indent=2)
            f.write('\n')
        os.replace(tmp, domain_path(dom['uuid']))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dom
