#!/usr/bin/env python3
# The lab hypervisor's `virsh` (test infrastructure, not product code).
#
# This is the lab's one stand-in for libvirt: there is no libvirtd and no QEMU here. It
# reads and edits the domain files that LabDriver (lab/files/labdriver.py) keeps in
# $LAB_DIR/state/domains/<instance uuid>.json; see that module for the JSON contract.
# Edits take the same exclusive flock on state/domains/.lock and replace files atomically.
#
# Output, messages and exit codes follow virsh 9.x with the QEMU driver:
#   * tables are printed the way tools/vsh-table.c prints them: a leading space before
#     every cell, cells padded to the widest one plus two spaces, and a dashed line as
#     wide as the sum of (column width + 3);
#   * after every command, failed or not, virsh prints one empty line on stdout (vsh.c
#     vshCommandRun); -q/--quiet drops it, table headers and "... successfully" notes;
#   * errors go to stderr as "error: ..." lines and the exit status is 1.
# Commands: list, domblklist, dumpxml, detach-disk. Domains are looked up by id (running
# domains are numbered 1..n in name order), UUID or name.
#
# detach-disk follows cmdDetachDisk + qemuDomainDetachDeviceFlags: the disk is looked up
# (by target or source) in the live XML, or in the inactive XML for --config alone; the
# config half is checked before the live half and nothing changes unless both succeed.
# Without any flag virsh calls the legacy virDomainDetachDevice, which the QEMU driver
# treats as --live: on a shut-off domain it fails with "domain is not running".
# The unplug always completes here (a real guest may take its time or never let go).

import shlex
import sys
from xml.sax.saxutils import escape

import labdomains

RUNNING = 'running'
SHUT_OFF = 'shut off'


class VirshError(Exception):
    """One or more 'error: ...' lines; the command fails."""

    def __init__(self, *lines):
        super().__init__(*lines)
        self.lines = lines


# ---------------------------------------------------------------------------------
# The domain files


def domains_dir():
    try:
        return labdomains.domains_dir()
    except labdomains.LabDirMissing:
        raise VirshError('failed to connect to the hypervisor',
                         'LAB_DIR is not set: this virsh reads $LAB_DIR/state/domains')


def load_domains():
    """Every domain, running ones first (numbered 1..n by name), then shut-off ones."""
    domains_dir()
    doms = labdomains.all_domains()
    running = sorted((d for d in doms if d.get('power') == RUNNING),
                     key=lambda d: d['name'])
    stopped = sorted((d for d in doms if d.get('power') != RUNNING),
                     key=lambda d: d['name'].lower())
    for number, dom in enumerate(running, 1):
        dom['_id'] = number
    for dom in stopped:
        dom['_id'] = None
    return running + stopped


def lookup(name):
    """The domain called name: as an id, a UUID, then a name (virshLookupDomainBy)."""
    doms = load_domains()
    found = None
    if name.isdigit():
        found = next((d for d in doms if d['_id'] == int(name)), None)
    if found is None and len(name) == 36:
        found = next((d for d in doms if d['uuid'].lower() == name.lower()), None)
    if found is None:
        found = next((d for d in doms if d['name'] == name), None)
    if found is None:
        raise VirshError("failed to get domain '%s'" % name)
    return found


locked = labdomains.locked


def save(dom, event):
    """Write dom back (with the lock held)."""
    return labdomains.write_domain(dom, event)


def disks(dom, inactive=False):
    """The disks of the live XML, or of the inactive XML (the only one when shut off)."""
    if inactive or dom.get('power') != RUNNING:
        return dom.get('config') or []
    return dom.get('live') or []


# ---------------------------------------------------------------------------------
# Output helpers


class Out:
    def __init__(self, quiet):
        self.quiet = quiet
        self.parts = []

    def print(self, text):
        self.parts.append(text)

    def extra(self, text):
        """vshPrintExtra: suppressed by --quiet."""
        if not self.quiet:
            self.parts.append(text)

    def table(self, header, rows):
        """vshTablePrintToStdout."""
        widths = [len(h) for h in header]
        for row in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]

        def line(cells):
            text = ''
            for i, cell in enumerate(cells):
                text += ' ' + cell
                if i < len(cells) - 1:
                    text += ' ' * (widths[i] - len(cell) + 2)
            return text + '\n'

        if not self.quiet:
            self.print(line(header))
            self.print('-' * sum(w + 3 for w in widths) + '\n')
        for row in rows:
            self.print(line(row))


def attr(value):
    """An attribute value the way libvirt writes it: in single quotes."""
    return "'%s'" % escape(value, {"'": '&apos;', '"': '&quot;'})


def disk_xml(disk, indent):
    """One <disk> element as libvirt formats it, each line prefixed by indent."""
    pad = indent + '  '
    lines = ['<disk type=%s device=%s>' % (attr(disk.get('type', 'block')),
                                           attr(disk.get('device', 'disk'))),
             pad + "<driver name='qemu' type='raw' cache='none' io='native'/>",
             pad + '<source dev=%s/>' % attr(disk.get('source', ''))]
    lines.append(pad + '<target dev=%s bus=%s/>' % (
        attr(disk.get('target_dev', '')), attr(disk.get('target_bus', 'scsi'))))
    if disk.get('serial'):
        lines.append(pad + '<serial>%s</serial>' % escape(disk['serial']))
    if disk.get('alias'):
        lines.append(pad + '<alias name=%s/>' % attr(disk['alias']))
    unit = drive_unit(disk)
    if unit is not None:
        lines.append(pad + "<address type='drive' controller='0' bus='0' target='0' "
                           "unit='%d'/>" % unit)
    lines.append(indent + '</disk>')
    return lines


def drive_unit(disk):
    """SCSI unit from the target name (sda -> 0, sdb -> 1), as libvirt assigns it."""
    dev = disk.get('target_dev', '')
    if disk.get('target_bus') != 'scsi' or not dev.startswith('sd') or len(dev) < 3:
        return None
    unit = 0
    for ch in dev[2:]:
        if not 'a' <= ch <= 'z':
            return None
        unit = unit * 26 + (ord(ch) - ord('a') + 1)
    return unit - 1


def domain_xml(dom, inactive):
    live = dom.get('power') == RUNNING and not inactive
    head = "<domain type='kvm'%s>" % (" id='%d'" % dom['_id'] if live else '')
    lines = [head,
             '  <name>%s</name>' % escape(dom['name']),
             '  <uuid>%s</uuid>' % escape(dom['uuid']),
             "  <os>",
             "    <type arch='x86_64' machine='pc'>hvm</type>",
             "  </os>",
             '  <devices>',
             '    <emulator>/usr/bin/qemu-system-x86_64</emulator>']
    for disk in disks(dom, inactive):
        lines.extend('    ' + l if i == 0 else l
                     for i, l in enumerate(disk_xml(disk, '    ')))
    lines += ['  </devices>', '</domain>']
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------
# Commands: each takes (options, out) and returns normally or raises VirshError.

COMMANDS = {}


def command(name, data=(), required=(), flags=()):
    """Declare a command: positional data options (in order), required ones, booleans."""
    def register(func):
        COMMANDS[name] = {'func': func, 'data': data, 'required': required,
                          'flags': flags}
        return func
    return register


def exclusive(opts, first, second):
    if opts.get(first) and opts.get(second):
        raise VirshError('Options --%s and --%s are mutually exclusive' % (first, second))


@command('list', flags=('all', 'inactive', 'name', 'table'))
def cmd_list(opts, out, conn):
    doms = load_domains()
    if not opts.get('all'):
        if opts.get('inactive'):
            doms = [d for d in doms if d.get('power') != RUNNING]
        else:
            doms = [d for d in doms if d.get('power') == RUNNING]
    if opts.get('name') and opts.get('table'):
        raise VirshError('Only one argument from --table, --name and --uuid may be '
                         'specified.')
    if opts.get('name'):
        for dom in doms:
            out.print(dom['name'] + '\n')
        return
    rows = [['-' if d['_id'] is None else str(d['_id']), d['name'],
             RUNNING if d.get('power') == RUNNING else SHUT_OFF] for d in doms]
    out.table(['Id', 'Name', 'State'], rows)


@command('domblklist', data=('domain',), required=('domain',),
         flags=('inactive', 'details'))
def cmd_domblklist(opts, out, conn):
    dom = lookup(opts['domain'])
    rows = []
    for disk in disks(dom, opts.get('inactive')):
        target = disk.get('target_dev') or ''
        source = disk.get('source') or '-'
        if opts.get('details'):
            rows.append([disk.get('type', 'block'), disk.get('device', 'disk'), target,
                         source])
        else:
            rows.append([target, source])
    header = ['Type', 'Device', 'Target', 'Source'] if opts.get('details') \
        else ['Target', 'Source']
    out.table(header, rows)


@command('dumpxml', data=('domain',), required=('domain',),
         flags=('inactive', 'security-info', 'update-cpu', 'migratable'))
def cmd_dumpxml(opts, out, conn):
    dom = lookup(opts['domain'])
    out.print(domain_xml(dom, opts.get('inactive')))


@command('detach-disk', data=('domain', 'target'), required=('domain', 'target'),
         flags=('persistent', 'config', 'live', 'current', 'print-xml'))
def cmd_detach_disk(opts, out, conn):
    exclusive(opts, 'persistent', 'current')
    exclusive(opts, 'current', 'live')
    exclusive(opts, 'current', 'config')
    config_only = opts.get('config') and not opts.get('live') \
        and not opts.get('persistent')
    with locked():
        dom = lookup(opts['domain'])
        running = dom.get('power') == RUNNING
        path = opts['target']
        # virshFindDisk: by target or by source, in the XML the flags point at
        looked_in = disks(dom, inactive=config_only)
        match = next((d for d in looked_in
                      if path in (d.get('target_dev'), d.get('source'))), None)
        if match is None:
            raise VirshError('No disk found whose source path or target is %s' % path)
        if opts.get('print-xml'):
            out.print('\n'.join(disk_xml(match, '    ')))
            return
        if conn.get('readonly'):
            api = 'virDomainDetachDeviceFlags' if any(
                opts.get(f) for f in ('persistent', 'config', 'live', 'current')) \
                else 'virDomainDetachDevice'
            raise VirshError('Failed to detach disk',
                             'operation forbidden: read only access prevents %s' % api)
        # Which definitions change (virDomainObjUpdateModificationImpact)
        if opts.get('live') or opts.get('config') or opts.get('persistent'):
            live = bool(opts.get('live')) or (bool(opts.get('persistent')) and running)
            config = bool(opts.get('config')) or bool(opts.get('persistent'))
        elif opts.get('current'):
            live, config = running, not running
        else:
            live, config = True, False       # legacy virDomainDetachDevice: live
        if live and not running:
            raise VirshError('Failed to detach disk',
                             'Requested operation is not valid: domain is not running')
        dev = match.get('target_dev')
        new_config = [d for d in dom.get('config') or [] if d.get('target_dev') != dev]
        new_live = [d for d in dom.get('live') or [] if d.get('target_dev') != dev]
        if config and len(new_config) == len(dom.get('config') or []):
            raise VirshError('Failed to detach disk',
                             'device not found: no target device %s' % dev)
        if live and len(new_live) == len(dom.get('live') or []):
            raise VirshError('Failed to detach disk',
                             'device not found: disk %s not found' % dev)
        if config:
            dom['config'] = new_config
        if live:
            dom['live'] = new_live
        where = '+'.join(w for w, on in (('live', live), ('config', config)) if on)
        save(dom, 'virsh detach-disk %s (%s)' % (dev, where))
    out.extra('Disk detached successfully\n')


# ---------------------------------------------------------------------------------
# Argument parsing (the parts of vsh.c's that matter here)


def parse_command(argv):
    """(name, options) from 'command [args...]'; raises VirshError like vsh's parser."""
    name, args = argv[0], argv[1:]
    spec = COMMANDS.get(name)
    if spec is None:
        raise VirshError("unknown command: '%s'" % name)
    opts = {}
    pending = list(spec['data'])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith('--') and len(arg) > 2:
            key, has_value, value = arg[2:].partition('=')
            if key in spec['flags'] and not has_value:
                opts[key] = True
            elif key in spec['data']:
                if not has_value:
                    if i + 1 >= len(args):
                        raise VirshError('expected syntax: --%s <string>' % key)
                    i += 1
                    value = args[i]
                opts[key] = value
                if key in pending:
                    pending.remove(key)
            else:
                raise VirshError("command '%s' doesn't support option --%s" % (name, key))
        else:
            if not pending:
                raise VirshError("unexpected data '%s'" % arg)
            opts[pending.pop(0)] = arg
        i += 1
    for key in spec['required']:
        if key not in opts:
            raise VirshError("command '%s' requires <%s> option" % (name, key))
    return name, opts


def parse_global(argv):
    """virsh [-c URI] [-q] [-r] command ...: returns (connection options, rest)."""
    conn = {'quiet': False, 'readonly': False, 'uri': None}
    i = 0
    while i < len(argv) and argv[i].startswith('-'):
        arg = argv[i]
        if arg in ('-q', '--quiet'):
            conn['quiet'] = True
        elif arg in ('-r', '--readonly'):
            conn['readonly'] = True
        elif arg in ('-c', '--connect'):
            if i + 1 >= len(argv):
                raise VirshError("option '%s' requires an argument" % arg)
            i += 1
            conn['uri'] = argv[i]
        elif arg.startswith('--connect='):
            conn['uri'] = arg.partition('=')[2]
        else:
            raise VirshError("unsupported option '%s'. See --help." % arg)
        i += 1
    return conn, argv[i:]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        conn, rest = parse_global(argv)
        if not rest:
            raise VirshError('this virsh stand-in has no interactive shell: give a command')
        if len(rest) == 1:
            rest = shlex.split(rest[0])     # virsh 'list --all' is one command string
            if not rest:
                raise VirshError('this virsh stand-in has no interactive shell: give a command')
        name, opts = parse_command(rest)
    except VirshError as err:
        for line in err.lines:
            sys.stderr.write('error: %s\n' % line)
        return 1
    out = Out(conn['quiet'])
    status = 0
    try:
        COMMANDS[name]['func'](opts, out, conn)
    except VirshError as err:
        status = 1
        sys.stdout.write(''.join(out.parts))
        sys.stdout.flush()
        for line in err.lines:
            sys.stderr.write('error: %s\n' % line)
        sys.stderr.flush()
        out.parts = []
    out.extra('\n')
    sys.stdout.write(''.join(out.parts))
    sys.stdout.flush()
    return status


if __name__ == '__main__':
    sys.exit(main())
