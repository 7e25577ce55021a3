"""Which Cinder volume a libvirt disk is: the one rule identify, verify, the last resort's
`virsh detach-disk` and the audit all use (docs/disks.md).

A disk is a volume's by Nova's own marks: its <serial> is the volume id, or its alias is
`ua-<volume id>`. Only a disk without such a mark falls back to its source, and then only when
the source's last path component is exactly `volume-<uuid>` (RBD `pool/volume-<id>`, an NFS
share's file): a path that merely contains an id names nothing."""
import re

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID = re.compile(_UUID)
SOURCE_NAME = re.compile(r"volume-(%s)" % _UUID)


def volume_id_of(disk):
    """The volume id (lower case) a domain disk is, or None for a disk that is no volume."""
    serial = (disk.get("serial") or "").strip().lower()
    alias = (disk.get("alias") or "").strip().lower()
    for mark in (serial, alias[len("ua-"):] if alias.startswith("ua-") else ""):
        if UUID.fullmatch(mark):
            return mark
    last = (disk.get("source") or "").strip().rstrip("/").rsplit("/", 1)[-1].lower()
    match = SOURCE_NAME.fullmatch(last)
    return match.group(1) if match else None


def disks_of_volume(disks, volume_id):
    """The disks, among `disks`, that are this volume."""
    vol = str(volume_id).strip().lower()
    return [d for d in disks if volume_id_of(d) == vol]


def volume_ids(disks):
    """Every volume id among the disks."""
    return {vid for vid in map(volume_id_of, disks) if vid}


def volume_ids_on_domain(domain):
    """Every volume id among a domain's disks, live or in the next-boot config."""
    return volume_ids((domain.get("live") or []) + (domain.get("config") or []))
