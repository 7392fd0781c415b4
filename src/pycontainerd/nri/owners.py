"""Which plugin set which field of a container: conflict detection between plugins.

Every adjustable field of a container is owned by at most one plugin per request. A field
is either *simple* (the memory limit, the cgroups path, ...) or *compound*, owned entry by
entry (one env variable, one mount destination, one annotation key...). Claiming a field or
entry that another plugin already claimed is a conflict, and the whole request fails
naming both plugins. A plugin may first *clear* an entry (remove it with a ``-`` marker)
and then set it again; the clearing is recorded as ``-<plugin>`` so that the same plugin can
re-claim it, while any other plugin still conflicts with it.

The bookkeeping is kept in the wire message :class:`OwningPlugins` so it can be handed to
validator plugins as it is.
"""

from __future__ import annotations

from .api import is_marked_for_removal, mark_for_removal, pb
from .errors import NRIError

Field = pb.Field
"""The ``nri.pkg.api.v1alpha1.Field`` enum wrapper (``Field.Value("Env")`` etc.)."""

F_ANNOTATIONS = 1
F_MOUNTS = 2
F_OCI_HOOKS = 3
F_DEVICES = 4
F_CDI_DEVICES = 5
F_ENV = 6
F_ARGS = 7
F_MEM_LIMIT = 8
F_MEM_RESERVATION = 9
F_MEM_SWAP = 10
F_MEM_KERNEL = 11
F_MEM_KERNEL_TCP = 12
F_MEM_SWAPPINESS = 13
F_MEM_DISABLE_OOM_KILLER = 14
F_MEM_USE_HIERARCHY = 15
F_CPU_SHARES = 16
F_CPU_QUOTA = 17
F_CPU_PERIOD = 18
F_CPU_REALTIME_RUNTIME = 19
F_CPU_REALTIME_PERIOD = 20
F_CPUSET_CPUS = 21
F_CPUSET_MEMS = 22
F_PIDS_LIMIT = 23
F_HUGEPAGE_LIMITS = 24
F_BLOCKIO_CLASS = 25
F_RDT_CLASS = 26
F_CGROUPS_UNIFIED = 27
F_CGROUPS_PATH = 28
F_OOM_SCORE_ADJ = 29
F_RLIMITS = 30
F_IO_PRIORITY = 31
F_SECCOMP_POLICY = 32
F_NAMESPACE = 33
F_SYSCTL = 34
F_LINUX_NET_DEVICES = 35
F_LINUX_SCHED = 36
F_RDT_CLOS_ID = 37
F_RDT_SCHEMATA = 38
F_RDT_ENABLE_MONITORING = 39
F_MEMORY_POLICY = 40


class ConflictError(NRIError):
    """Two plugins tried to set the same field (or the same entry of a compound field).

    Attributes:
        plugin: The plugin whose claim failed.
        other: The plugin that owned the field already.
        field: The field's name (``Env``, ``Mounts``, ``MemLimit``...).
        key: The entry of a compound field, or "".
    """

    def __init__(self, plugin: str, other: str, field: int, key: str = "") -> None:
        self.plugin = plugin
        self.other = other
        self.field = field_name(field)
        self.key = key
        what = f"{self.field} {key}" if key else self.field
        super().__init__(f'plugins "{plugin}" and "{other}" both tried to set {what}')


def field_name(field: int) -> str:
    """The enum name of ``field`` (the number itself if unknown)."""
    try:
        return str(Field.Name(field))
    except ValueError:
        return str(field)


class Owners:
    """Ownership of container fields, by container ID, within one request."""

    def __init__(self) -> None:
        self.message = pb.OwningPlugins()

    def _fields(self, container_id: str) -> pb.FieldOwners:
        return self.message.owners[container_id]  # created on first access

    def claim(self, container_id: str, field: int, plugin: str) -> None:
        """Claim a simple field.

        Raises:
            ConflictError: If another plugin owns (or cleared) the field.
        """
        owners = self._fields(container_id)
        if field in owners.simple:
            _check(owners.simple[field], plugin, field, "")
        owners.simple[field] = plugin

    def claim_entry(self, container_id: str, field: int, key: str, plugin: str) -> None:
        """Claim one entry of a compound field.

        Raises:
            ConflictError: If another plugin owns (or cleared) the entry.
        """
        entries = self._fields(container_id).compound[field].owners
        if key in entries:
            _check(entries[key], plugin, field, key)
        entries[key] = plugin

    def clear(self, container_id: str, field: int, plugin: str) -> None:
        """Record that ``plugin`` cleared a simple field."""
        self._fields(container_id).simple[field] = mark_for_removal(plugin)

    def clear_entry(self, container_id: str, field: int, key: str, plugin: str) -> None:
        """Record that ``plugin`` removed one entry of a compound field."""
        self._fields(container_id).compound[field].owners[key] = mark_for_removal(plugin)

    def accumulate(self, container_id: str, field: int, plugin: str) -> None:
        """Add ``plugin`` to the owners of a field several plugins may extend (OCI hooks)."""
        owners = self._fields(container_id)
        old = owners.simple.get(field)
        owners.simple[field] = f"{old},{plugin}" if old else plugin

    def owner(self, container_id: str, field: int, key: str | None = None) -> str | None:
        """The recorded owner of a field or entry, or None."""
        if container_id not in self.message.owners:
            return None
        owners = self.message.owners[container_id]
        if key is None:
            value = owners.simple.get(field)
        elif field in owners.compound:
            value = owners.compound[field].owners.get(key)
        else:
            value = None
        return None if value is None else str(value)


def _check(current: str, plugin: str, field: int, key: str) -> None:
    other = current
    clearer, cleared = is_marked_for_removal(current)
    if cleared:
        if clearer == plugin:
            return
        other = clearer
    raise ConflictError(plugin, other, field, key)
