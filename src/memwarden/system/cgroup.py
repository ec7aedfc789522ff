"""The memory cgroup a process sits in: v2, v1, or both (a hybrid host).

Read from the process's /proc/PID/cgroup line and the cgroup filesystem under
``sys_root``; nothing here raises, and a figure the kernel does not offer is
``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupMemory", "from_proc_cgroup"]

# cgroup v1 reports "no limit" as a huge page-aligned number, not a keyword.
_V1_NO_LIMIT = 1 << 60


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    version: int
    path: str
    current_bytes: int | None
    limit_bytes: int | None  # None: no limit
    oom_kills: int | None


def from_proc_cgroup(text: str, sys_root: str) -> CgroupMemory | None:
    """The memory cgroup named by the text of a /proc/PID/cgroup file."""
    v1_path = v2_path = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    base = Path(sys_root) / "fs" / "cgroup"
    if v1_path is not None:
        found = _v1(base / "memory", v1_path)
        if found is not None:
            return found
    if v2_path is not None:
        for mount in (base, base / "unified"):
            found = _v2(mount, v2_path)
            if found is not None:
                return found
    return None


def _resolve(mount: Path, path: str, marker: str) -> Path | None:
    # Inside a cgroup namespace /proc/self/cgroup may name a path the mount
    # does not show; walk up to the deepest ancestor that exists.
    rel = path.strip("/")
    while True:
        candidate = mount / rel if rel else mount
        if (candidate / marker).is_file():
            return candidate
        if not rel:
            return None
        rel = rel.rpartition("/")[0]


def _int_file(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    if raw == "max":
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _v2(mount: Path, path: str) -> CgroupMemory | None:
    group = _resolve(mount, path, "memory.current")
    if group is None:
        return None
    oom: int | None = None
    try:
        for line in (group / "memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                oom = int(value)
    except (OSError, ValueError):
        pass
    # The limit that applies is the smallest on the way up: a service with
    # memory.max "max" under a slice with MemoryMax= is still bounded.
    limit: int | None = None
    node = group
    while True:
        bound = _int_file(node / "memory.max")
        if bound is not None and (limit is None or bound < limit):
            limit = bound
        if node == mount:
            break
        node = node.parent
    return CgroupMemory(2, _group_path(group, mount),
                        _int_file(group / "memory.current"), limit, oom)


def _v1(mount: Path, path: str) -> CgroupMemory | None:
    group = _resolve(mount, path, "memory.usage_in_bytes")
    if group is None:
        return None
    limit = _int_file(group / "memory.limit_in_bytes")
    # An ancestor's limit applies too; the kernel reports the effective one.
    try:
        for line in (group / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "hierarchical_memory_limit":
                inherited = int(value)
                if limit is None or inherited < limit:
                    limit = inherited
                break
    except (OSError, ValueError):
        pass
    if limit is not None and limit >= _V1_NO_LIMIT:
        limit = None
    oom: int | None = None
    try:
        for line in (group / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                oom = int(value)
    except (OSError, ValueError):
        pass
    return CgroupMemory(1, _group_path(group, mount),
                        _int_file(group / "memory.usage_in_bytes"), limit, oom)


def _group_path(group: Path, mount: Path) -> str:
    # Not str(...).strip("."): that also eats the dots of a group named ".x" or "x.".
    rel = group.relative_to(mount).as_posix()
    return "/" if rel == "." else "/" + rel
