"""The lab's stand-in for a libvirt hypervisor (test infrastructure, not product code).

``LabDriver`` is Nova's fake compute driver plus what a libvirt domain would hold for
each instance: its power state and two disk lists, ``live`` (the running domain) and
``config`` (the persistent definition used at next boot). The lab loads it as
``nova.virt.labdriver`` (``compute_driver = labdriver.LabDriver``).

Each domain is one JSON file, ``$LAB_DIR/state/domains/<instance uuid>.json``, shared
with the lab's ``virsh`` stand-in (lab/files/virsh.py) and the tests, which may edit it
at any time. So the file is read on every call and never cached; every edit holds an
exclusive ``flock`` on ``state/domains/.lock`` and replaces the file atomically.

    {"uuid": str, "name": "instance-0000000N", "power": "running" | "shut off",
     "live": [disk, ...], "config": [disk, ...], "last_event": str,
     "updated_at": ISO 8601 str}

    disk = {"type": "block", "device": "disk", "target_dev": "sdb", "target_bus": "scsi",
            "source": "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2010-10.org.openstack:"
                      "volume-<volume id>-lun-0",
            "serial": "<volume id>", "alias": "ua-<volume id>", "boot": bool}

While a domain is shut off only ``config`` counts (libvirt has no live definition then).

What it copies from Nova's libvirt driver:
* spawn, power_on, hard reboot and resume_state_on_host_boot regenerate both lists from
  the block device mappings; a soft reboot restarts the persistent definition
  (live := config), as libvirt's ``_soft_reboot`` relaunches the defined domain.
* detach_volume removes the disk from ``config`` first, then from ``live``; a disk
  missing from both is treated as already detached (Nova logs and carries on).

Failure switch: the flag file ``$LAB_DIR/state/refuse-detach/<volume id>`` makes the
guest refuse a live unplug: the disk leaves ``config``, stays in ``live``, and
``DeviceDetachFailed`` is raised.
"""

import contextlib
import datetime
import os

from oslo_log import log as logging

# the domain files, shared with virsh.py (lab/up links labdomains.py into the venv)
from labdomains import all_domains, domain_path, domains_dir, locked, read_domain, write_domain

from nova.compute import power_state
from nova import exception
from nova.virt import driver
from nova.virt import fake
from nova.virt import hardware

LOG = logging.getLogger(__name__)

RUNNING = 'running'
SHUT_OFF = 'shut off'
SOURCE_FORMAT = ('/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-'
                 'iqn.2010-10.org.openstack:volume-%s-lun-0')
_BUS_BY_PREFIX = (('vd', 'virtio'), ('sd', 'scsi'), ('hd', 'ide'), ('xvd', 'xen'))


# Pure helpers (no Nova objects, no files) -------------------------------------

def volume_id(connection_info):
    """The volume id: connection_info['serial'], else connection_info['data']['volume_id']."""
    serial = connection_info.get('serial')
    if serial:
        return serial
    return (connection_info.get('data') or {}).get('volume_id')


def target_dev(mountpoint):
    """'/dev/sdb' -> 'sdb' (a bare 'sdb' is returned as is)."""
    return (mountpoint or '').rpartition('/')[2]


def make_disk(connection_info, mountpoint, boot=False, disk_bus=None):
    """The domain's <disk> for a Cinder volume attached at mountpoint."""
    vol = volume_id(connection_info)
    dev = target_dev(mountpoint)
    bus = disk_bus
    if not bus:
        bus = next((b for prefix, b in _BUS_BY_PREFIX if dev.startswith(prefix)), 'scsi')
    return {'type': 'block', 'device': 'disk', 'target_dev': dev, 'target_bus': bus,
            'source': SOURCE_FORMAT % vol, 'serial': vol, 'alias': 'ua-%s' % vol,
            'boot': bool(boot)}


def disks_from_block_device_info(block_device_info):
    """The disks Nova's libvirt driver would put in a freshly generated domain."""
    root = driver.block_device_info_get_root_device(block_device_info)
    disks = []
    for bdm in driver.block_device_info_get_mapping(block_device_info):
        mount = bdm.get('mount_device')
        boot = bool(root) and mount == root
        disks.append(make_disk(bdm.get('connection_info') or {}, mount, boot=boot,
                               disk_bus=bdm.get('disk_bus')))
    disks.sort(key=lambda d: (not d['boot'], d['target_dev']))
    return disks


def find_disk(disks, vol, dev):
    """Index of the disk, looked up by volume (alias/serial) first, then by target."""
    for i, disk in enumerate(disks):
        if vol and (disk.get('serial') == vol or disk.get('alias') == 'ua-%s' % vol):
            return i
    for i, disk in enumerate(disks):
        if dev and disk.get('target_dev') == dev:
            return i
    return None


def put_disk(disks, disk):
    """disks with disk added, replacing an entry for the same volume."""
    kept = [d for d in disks if d.get('serial') != disk['serial']]
    return kept + [disk]


def new_domain(uuid, name, power, disks, event):
    return {'uuid': uuid, 'name': name, 'power': power,
            'live': [dict(d) for d in disks], 'config': [dict(d) for d in disks],
            'last_event': event, 'updated_at': now()}


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds')


# The state files ----------------------------------------------------------------

def lab_dir():
    path = os.environ.get('LAB_DIR')
    if not path:
        raise RuntimeError('LabDriver: LAB_DIR is not set (the lab sets it for nova-compute)')
    return path


def refuses_detach(vol):
    return bool(vol) and os.path.exists(os.path.join(lab_dir(), 'state', 'refuse-detach', vol))


# The driver ---------------------------------------------------------------------

class LabDriver(fake.FakeDriverWithoutFakeNodes):
    """FakeDriver whose domains (power state, live and config disks) live in JSON files."""

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only=read_only)
        # Instances reloaded from the state files after a restart: the fake Resources
        # never claimed their flavor, so destroy must not release it either.
        self._unclaimed = set()

    def _track(self, instance, state):
        """Make sure FakeDriver's in-memory table knows the instance (no claim)."""
        known = self.instances.get(instance.uuid)
        if known is None:
            self.instances[instance.uuid] = fake.FakeInstance(instance.name, state,
                                                              instance.uuid)
            self._unclaimed.add(instance.uuid)
        else:
            known.state = state

    def _regenerate(self, instance, block_device_info, event):
        """What libvirt's _hard_reboot does: a new domain from the BDMs, started."""
        self._track(instance, power_state.RUNNING)
        with locked():
            write_domain(new_domain(instance.uuid, instance.name, RUNNING,
                                    disks_from_block_device_info(block_device_info), event),
                         event)

    def init_host(self, host):
        super().init_host(host)
        os.makedirs(domains_dir(), exist_ok=True)
        for dom in all_domains():
            if dom['uuid'] not in self.instances:
                state = power_state.RUNNING if dom.get('power') == RUNNING \
                    else power_state.SHUTDOWN
                self.instances[dom['uuid']] = fake.FakeInstance(dom.get('name'), state,
                                                                dom['uuid'])
                self._unclaimed.add(dom['uuid'])
        LOG.info('LabDriver: %d domain(s) reloaded from %s', len(self.instances),
                 domains_dir())

    def get_info(self, instance, use_cache=True):
        dom = read_domain(instance.uuid)
        if dom is None:
            return super().get_info(instance, use_cache=use_cache)
        state = power_state.RUNNING if dom.get('power') == RUNNING else power_state.SHUTDOWN
        return hardware.InstanceInfo(state=state)

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info=network_info,
                      block_device_info=block_device_info, power_on=power_on,
                      accel_info=accel_info)
        self._unclaimed.discard(instance.uuid)
        with locked():
            write_domain(new_domain(instance.uuid, instance.name,
                                    RUNNING if power_on else SHUT_OFF,
                                    disks_from_block_device_info(block_device_info),
                                    'spawn'), 'spawn')

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        self._track(instance, power_state.RUNNING)
        super().power_on(context, instance, network_info,
                         block_device_info=block_device_info, accel_info=accel_info,
                         share_info=share_info)
        self._regenerate(instance, block_device_info, 'power_on')

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        if reboot_type.upper() == 'SOFT':
            with locked():
                dom = read_domain(instance.uuid)
                if dom is not None and dom.get('power') == RUNNING:
                    dom['live'] = [dict(d) for d in dom.get('config', [])]
                    write_domain(dom, 'reboot soft')
                    self._track(instance, power_state.RUNNING)
                    return
            # libvirt's soft reboot fails for a domain that is not running, and Nova
            # then falls back to a hard reboot.
        self._regenerate(instance, block_device_info, 'reboot hard')

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        self._regenerate(instance, block_device_info, 'resume_state_on_host_boot')

    def power_off(self, instance, timeout=0, retry_interval=0):
        with locked():
            dom = read_domain(instance.uuid)
            if dom is not None:
                self._track(instance, power_state.SHUTDOWN)
                dom['power'] = SHUT_OFF
                write_domain(dom, 'power_off')
        super().power_off(instance, timeout=timeout, retry_interval=retry_interval)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        if instance.uuid in self._unclaimed:
            self._unclaimed.discard(instance.uuid)
            self.instances.pop(instance.uuid, None)
        else:
            super().destroy(context, instance, network_info,
                            block_device_info=block_device_info,
                            destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)
        with locked():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(domain_path(instance.uuid))

    def attach_volume(self, context, connection_info, instance, mountpoint,
                      disk_bus=None, device_type=None, encryption=None):
        disk = make_disk(connection_info, mountpoint, disk_bus=disk_bus)
        with locked():
            dom = read_domain(instance.uuid)
            if dom is None:
                # libvirt: no such domain
                raise exception.InstanceNotFound(instance_id=instance.uuid)
            dom['config'] = put_disk(dom.get('config', []), disk)
            dom['live'] = put_disk(dom.get('live', []), disk)
            write_domain(dom, 'attach_volume %s' % disk['target_dev'])
        super().attach_volume(context, connection_info, instance, mountpoint,
                              disk_bus=disk_bus, device_type=device_type,
                              encryption=encryption)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None):
        vol = volume_id(connection_info)
        dev = target_dev(mountpoint)
        refused = False
        with locked():
            dom = read_domain(instance.uuid)
            if dom is None:
                LOG.warning('During detach_volume, instance disappeared.',
                            instance=instance)
                return super().detach_volume(context, connection_info, instance,
                                             mountpoint, encryption=encryption)
            running = dom.get('power') == RUNNING
            in_config = find_disk(dom.get('config', []), vol, dev)
            in_live = find_disk(dom.get('live', []), vol, dev) if running else None
            if in_config is None and in_live is None:
                LOG.warning('disk ua-%s (%s) not in domain; treating as already detached',
                            vol, dev, instance=instance)
                return super().detach_volume(context, connection_info, instance,
                                             mountpoint, encryption=encryption)
            if in_config is not None:
                del dom['config'][in_config]
            if in_live is not None:
                refused = refuses_detach(vol)
                if not refused:
                    del dom['live'][in_live]
            write_domain(dom, ('detach_volume %s refused by guest' if refused
                               else 'detach_volume %s') % dev)
        if refused:
            raise exception.DeviceDetachFailed(
                device=dev,
                reason='the guest did not release the device '
                       '(lab flag state/refuse-detach/%s)' % vol)
        super().detach_volume(context, connection_info, instance, mountpoint,
                              encryption=encryption)
