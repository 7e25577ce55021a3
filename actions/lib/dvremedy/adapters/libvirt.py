"""A domain's disks as libvirt sees them, read with virsh over an SSH session: each disk's
target, source, <serial> and alias, which model.disks matches to a Cinder volume."""

import shlex
import uuid
import xml.etree.ElementTree as ET

from dvremedy.errors import InputError, LibvirtError, NotFound, tail

SOURCE_ATTRS = ("file", "dev", "dir", "name", "volume", "path")
DETACH_MODES = ("live", "config", "persistent")
UNKNOWN_DOMAIN_TEXTS = ("failed to get domain", "domain not found", "no domain with matching")


def parse_domain_xml(xml_text):
    """The <disk> devices of a domain XML as dicts: type, device, target, bus, source,
    serial, alias (None where the XML has no value)."""
    return _disks(_domain_root(xml_text))


def _domain_root(xml_text):
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise LibvirtError("domain XML does not parse: %s" % exc,
                           stdout_tail=tail(xml_text, 500))
    if root.tag != "domain":
        raise LibvirtError("expected a <domain> document, got <%s>" % root.tag)
    return root


def _disks(root):
    disks = []
    for disk in root.findall("./devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        alias = disk.find("alias")
        serial = disk.findtext("serial")
        disks.append({
            "type": disk.get("type"),
            "device": disk.get("device"),
            "target": target.get("dev") if target is not None else None,
            "bus": target.get("bus") if target is not None else None,
            "source": _source(source),
            "serial": serial.strip() if serial else None,
            "alias": alias.get("name") if alias is not None else None,
        })
    return disks


def _source(element):
    if element is None:
        return None
    for attr in SOURCE_ATTRS:
        if element.get(attr):
            return element.get(attr)
    return None


def parse_domblklist(text, details=None):
    """Rows of `virsh domblklist [--details]` as dicts (type, device, target, source); source
    '-' becomes None. `details` None: decided by the header (no header: without --details)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) >= 2 and lines[1].strip().startswith("---"):
        header, lines = lines[0].split(), lines[2:]
        if details is None:
            details = header[:1] == ["Type"]
    rows = []
    for line in lines:
        if details:
            cells = line.split(None, 3)
            if len(cells) < 4:
                raise LibvirtError("cannot read domblklist --details row %r" % line)
            kind, device, target, source = cells
        else:
            cells = line.split(None, 1)
            if len(cells) < 2:
                raise LibvirtError("cannot read domblklist row %r" % line)
            kind, device, (target, source) = None, None, cells
        source = source.strip()
        rows.append({"type": kind, "device": device, "target": target,
                     "source": None if source == "-" else source})
    return rows


def domain_disks(session, virsh_prefix, domain, inactive=False, timeout=None):
    """The disks of `domain`, live (default) or of its next boot (inactive=True)."""
    argv = _virsh(virsh_prefix, "dumpxml") + (["--inactive"] if inactive else [])
    result = _check(session, argv + [_name("domain", domain)], "read domain %s" % domain,
                    timeout)
    return parse_domain_xml(result.stdout)


def domain_state(session, virsh_prefix, domain, timeout=None):
    """'running', 'shut off', 'paused', ... from `virsh list --all`. A UUID is resolved to the
    domain's name through its XML (the table shows names only)."""
    domain = _name("domain", domain)
    result = _check(session, _virsh(virsh_prefix, "list", "--all"), "list domains", timeout)
    states = _list_table(result.stdout)
    if domain not in states:
        xml_result = _check(session, _virsh(virsh_prefix, "dumpxml", domain),
                            "read domain %s" % domain, timeout)
        name = _domain_root(xml_result.stdout).findtext("name")
        if name not in states:
            raise NotFound("domain %s is not in `virsh list --all` on %s"
                           % (domain, session.target.host), host=session.target.host)
        domain = name
    return states[domain]


def _list_table(text):
    """{name: state} from `virsh list` (state may have a space: 'shut off')."""
    states = {}
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) >= 2 and lines[1].strip().startswith("---"):
        lines = lines[2:]
    for line in lines:
        cells = line.split(None, 2)
        if len(cells) == 3:
            states[cells[1]] = cells[2].strip()
    return states


def detach_disk(session, virsh_prefix, domain, target, mode, timeout=None):
    """`virsh detach-disk <domain> <target> --<mode>`. The unplug is asynchronous: callers
    re-read the disks to see it done."""
    if mode not in DETACH_MODES:
        raise InputError("detach mode must be one of %s, got %r"
                         % (", ".join(DETACH_MODES), mode))
    argv = _virsh(virsh_prefix, "detach-disk", _name("domain", domain),
                  _name("target", target), "--" + mode)
    result = _check(session, argv, "detach %s from %s (--%s)" % (target, domain, mode),
                    timeout, unknown_is_not_found=False)
    return {"domain": domain, "target": target, "mode": mode, "duration_s": result.duration,
            "output_tail": tail(result.stdout.strip())}


def all_domains_disks(session, virsh_prefix, timeout=None):
    """Every domain on the host with its live and next-boot disks, in ONE remote command:
    {name: {"live": [...], "config": [...], "running": bool}}. A domain that vanished
    between listing and reading gets None for that view and an "error"."""
    marker = "@@dvremedy-%s" % uuid.uuid4().hex    # random: no domain XML can forge it
    virsh = " ".join(shlex.quote(arg) for arg in _virsh(virsh_prefix))
    script = (
        'names=$({v} list --all --name </dev/null) || exit $?\n'
        'printf "%s\\n" "$names" | while IFS= read -r dom; do\n'
        '  [ -n "$dom" ] || continue\n'
        '  printf "%s domain %s\\n" {m} "$dom"\n'
        '  {v} dumpxml --domain "$dom" </dev/null; printf "\\n%s end live %s\\n" {m} $?\n'
        '  {v} dumpxml --inactive --domain "$dom" </dev/null\n'
        '  printf "\\n%s end config %s\\n" {m} $?\n'
        'done\n').format(v=virsh, m=marker)
    result = _check(session, ["sh", "-c", script], "list the domains' disks", timeout)
    return _parse_all(result.stdout, marker)


def _parse_all(text, marker):
    domains, name, chunk = {}, None, []
    for line in text.splitlines():
        words = line.split(" ", 3)
        if words[0] != marker or len(words) < 3:
            chunk.append(line)
        elif words[1] == "domain":
            name, chunk = line.split(" ", 2)[2], []
            domains[name] = {"live": None, "config": None, "running": False}
        elif words[1] == "end" and name is not None:
            view, code = words[2], words[3] if len(words) > 3 else "?"
            if code == "0":
                root = _domain_root("\n".join(chunk))
                domains[name][view] = _disks(root)
                if view == "live":    # only a running domain's live XML has an id
                    domains[name]["running"] = root.get("id") not in (None, "-1")
            else:
                domains[name]["error"] = "virsh dumpxml (%s) exited %s" % (view, code)
            chunk = []
    return domains


def _virsh(prefix, *args):
    if isinstance(prefix, str) or not prefix:
        raise InputError("the virsh command prefix must be a non-empty list, e.g. ['virsh'], "
                         "got %r" % (prefix,))
    return list(prefix) + list(args)


def _name(what, value):
    """Domain names and targets go to virsh as arguments: never let one look like an option."""
    if not isinstance(value, str) or not value or value.startswith("-"):
        raise InputError("%s must be a name that does not start with '-', got %r"
                         % (what, value))
    return value


def _check(session, argv, doing, timeout, unknown_is_not_found=True):
    result = session.run(argv, timeout=timeout)
    if result.exit_code == 0:
        return result
    host = session.target.host
    err = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    reason = "; ".join(err[-2:]) or "exit %d, no message" % result.exit_code
    evidence = dict(host=host, command=result.command, exit_code=result.exit_code,
                    stderr_tail=tail(result.stderr), stdout_tail=tail(result.stdout))
    if unknown_is_not_found and any(t in reason.lower() for t in UNKNOWN_DOMAIN_TEXTS):
        raise NotFound("virsh on %s cannot %s: %s" % (host, doing, reason), **evidence)
    raise LibvirtError("virsh on %s could not %s: %s" % (host, doing, reason), **evidence)
