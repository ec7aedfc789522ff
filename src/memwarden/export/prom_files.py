"""Prometheus multiprocess files: the directory the master prepares, the lock
that scrapes share and the fold takes, and the compaction of dead workers'
files into one archive per type."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from memwarden.export.prom_metrics import _ARCHIVED_TYPES, ENV_DIR, LOCK_FILE, _client, _untyped

_log = logging.getLogger("memwarden.exporters.prometheus")

# -- the master ------------------------------------------------------------------------

class _Master:
    pid = -1
    directory = ""
    made_directory = False  # a temporary one, removed when the master exits


def _directory() -> str:
    directory = os.environ.get(ENV_DIR)
    if not directory:
        raise RuntimeError(f"{ENV_DIR} is not set: call memwarden.exporters.setup_master() "
                           "in the gunicorn master before the workers fork")
    return directory


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(directory: str, *, shared: bool, timeout: float = 5.0) -> Iterator[bool]:
    """Hold the directory's lock; yields False if it could not be had in time."""
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o644)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.005)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _split(path: str) -> tuple[str, str, int | None]:
    """(type, gauge mode or "", pid or None) from a multiprocess file name."""
    parts = os.path.basename(path)[:-3].split("_")
    if parts[0] == "gauge" and len(parts) == 3:
        typ, mode, raw = parts
    elif len(parts) == 2:
        typ, mode, raw = parts[0], "", parts[1]
    else:
        return parts[0], "", None
    return typ, mode, int(raw) if raw.isdigit() else None


def compact(directory: str, dead: Iterable[int] = (),
            alive: Callable[[int], bool] = _pid_alive) -> int:
    """Fold the files of dead processes into the archives; returns the files removed.

    Live-gauge files of dead processes are deleted (their series must go);
    counter, histogram and summary files are merged into ``<type>_archive.db``
    so that totals never go backwards. Other gauge modes are left alone.
    """
    _client()
    multiprocess = _untyped("prometheus_client.multiprocess")
    mmap_dict = _untyped("prometheus_client.mmap_dict")

    dead_set = set(dead)
    me = os.getpid()
    folds: dict[str, list[str]] = {}
    live_gauges: list[str] = []
    for path in glob.glob(os.path.join(directory, "*.db")):
        typ, mode, pid = _split(path)
        if pid is None or pid == me:
            continue
        if pid not in dead_set and alive(pid):
            continue
        if typ == "gauge" and mode.startswith("live"):
            live_gauges.append(path)
        elif typ in _ARCHIVED_TYPES:
            folds.setdefault(typ, []).append(path)
    if not folds and not live_gauges:
        return 0
    removed = 0
    with _locked(directory, shared=False) as held:
        if not held:
            _log.warning("memwarden could not lock %s to fold dead workers' metrics; "
                         "will retry at the next worker exit", directory)
            return 0
        for path in live_gauges:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed += 1
        for typ, paths in folds.items():
            archive = os.path.join(directory, f"{typ}_archive.db")
            sources = ([archive] if os.path.exists(archive) else []) + paths
            merged = multiprocess.MultiProcessCollector.merge(sources, accumulate=False)
            tmp = os.path.join(directory, f".{typ}_archive.tmp")
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            out = mmap_dict.MmapedDict(tmp)
            try:
                for metric in merged:
                    for sample in metric.samples:
                        key = mmap_dict.mmap_key(metric.name, sample.name, list(sample.labels),
                                       list(sample.labels.values()), metric.documentation)
                        out.write_value(key, sample.value, 0.0)
            finally:
                out.close()
            # Rename, then delete: a scrape (shut out by the lock meanwhile) sees
            # either the old archive and the dead files or the new archive alone.
            os.replace(tmp, archive)
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed += 1
    return removed


def mark_worker_dead(pid: int) -> None:
    """In the master (``child_exit``): remove a dead worker's series, keep its counts."""
    if _Master.pid != os.getpid():
        return
    _untyped("prometheus_client.multiprocess").mark_process_dead(pid, _Master.directory)
    removed = compact(_Master.directory, dead=(pid,))
    _log.debug("folded metrics of dead worker", extra={"worker_pid": pid, "files": removed})
