"""Conversation context per session, kept by Mem0: each turn is a memory.

Every turn (the user's message, the agent's answer) goes into Mem0 with
``Memory.add(..., user_id=<session id>, infer=False)``: embedded by the
local model endpoint and stored as a point in qdrant, with a row in Mem0's
SQLite history. A session's history is its memories, oldest first.

Leak 4, as found: :class:`ContextManager` keeps one ``Memory`` per worker with
qdrant and the history in the worker's memory, and a dict of every session's
metadata; nothing is ever deleted. Sessions come from signed cookies, so a new
user (or a client without a cookie jar) is a new session, and every turn of
every user stays in the worker until it dies.

:class:`BoundedContextManager` is the fix behind the same interface: at most
``max_sessions`` sessions (least recently used go first), idle ones expire
after ``ttl`` seconds, each keeps its last ``max_turns`` memories; what it
drops is deleted from qdrant and from Mem0's history table. In hardened mode
the same bounded store runs in the memory sidecar (``tooling.memory_server``)
with qdrant and the history on disk, and the worker holds none of it
(:class:`api.memory_client.RemoteContextStore`).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cachetools import TTLCache

from api import config
from api.memory import COLLECTION
from api.utils import resource_monitor

__all__ = ["BoundedContextManager", "ContextManager", "ContextStore", "get_store", "make_store"]

_MAX_META = 200
# A session as found can hold any number of memories: list them all.
_ALL = 1_000_000
# qdrant's local mode only marks a deleted point: vector, payload and slot stay
# in memory. The bounded store rebuilds the collection once this many (or as
# many as it keeps, if more) have piled up: O(1) per delete, amortised.
_COMPACT_AFTER = 256


class _Mem0Turns:
    """The turns of each session as Mem0 memories (``user_id`` = session id)."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self._lock = threading.RLock()
        self._memories = 0

    def _add(self, session_id: str, role: str, content: str, extra: dict[str, Any]) -> None:
        metadata = {"at": time.time(), **{k: str(v)[:_MAX_META] for k, v in extra.items()}}
        added = self.memory.add([{"role": role, "content": content}], user_id=session_id,
                                infer=False, metadata=metadata)
        self._memories += len(added["results"])

    def _rows(self, session_id: str, limit: int = _ALL) -> list[dict[str, Any]]:
        found = self.memory.get_all(filters={"user_id": session_id}, top_k=limit)["results"]
        return sorted(found, key=lambda row: float((row.get("metadata") or {}).get("at", 0.0)))

    def _delete(self, rows: Iterable[dict[str, Any]]) -> None:
        ids = [row["id"] for row in rows]
        for memory_id in ids:
            self.memory.delete(memory_id)
        self._memories -= len(ids)
        # Mem0 keeps a history row per ADD and per DELETE for ever: a bounded
        # store drops the rows of what it forgot, or the table is the leak.
        db = self.memory.db
        with db._lock, db.connection:
            db.connection.executemany("DELETE FROM history WHERE memory_id = ?",
                                      [(memory_id,) for memory_id in ids])

    def history(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._rows(session_id)
        return [{"role": row.get("role"), "content": row.get("memory"),
                 "at": (row.get("metadata") or {}).get("at")} for row in rows]

    def memories(self) -> int:
        """Memories added and not deleted in this process (O(1))."""
        return self._memories

    def points(self) -> int:
        """Points in the vector store's collection, as qdrant counts them."""
        with self._lock:
            return int(self.memory.vector_store.client.count(COLLECTION, exact=True).count)


def _new_meta(user_agent: str) -> dict[str, Any]:
    now = time.time()
    return {"created": now, "last_seen": now, "turns": 0, "user_agent": user_agent[:_MAX_META]}


class ContextManager(_Mem0Turns):
    """As found: Mem0 in the worker, and every session's metadata, kept forever."""

    def __init__(self, memory: Any) -> None:
        super().__init__(memory)
        self._sessions: dict[str, dict[str, Any]] = {}

    def add_turn(self, session_id: str, role: str, content: str, *, user_agent: str = "",
                 **extra: Any) -> int:
        """Store a turn of the session (created on first use); return its turn count."""
        with self._lock:
            meta = self._sessions.get(session_id)
            if meta is None:
                meta = self._sessions[session_id] = _new_meta(user_agent)
            self._add(session_id, role, content, extra)
            meta["turns"] += 1
            meta["last_seen"] = time.time()
            return int(meta["turns"])

    def count(self) -> int:
        return len(self._sessions)


class _SessionCache(TTLCache):  # type: ignore[type-arg]
    """A TTL + LRU cache that reports every session it drops."""

    def __init__(self, maxsize: int, ttl: float, on_drop: Callable[[str], None]) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl)
        self._on_drop = on_drop

    def expire(self, time: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        expired: list[tuple[str, dict[str, Any]]] = super().expire(time)
        for key, _meta in expired:
            self._on_drop(key)
        return expired

    def popitem(self) -> tuple[str, dict[str, Any]]:
        # TTLCache.popitem expires first (reported above), then drops the LRU item.
        key, meta = super().popitem()
        self._on_drop(key)
        return key, meta


class BoundedContextManager(_Mem0Turns):
    """The fix: bounded sessions (LRU + idle TTL), each with its last ``max_turns`` turns.

    The bounds hold for what Mem0 keeps: a dropped session's memories, and a
    turn past the cap, are deleted from the vector store and the history table.
    On a store that outlives the process (qdrant on disk) the sessions found
    in it are taken up again, oldest first, so the bounds also hold for them.
    """

    def __init__(self, memory: Any, max_sessions: int, max_turns: int, ttl: float) -> None:
        super().__init__(memory)
        self._max_turns = max_turns
        self._ttl = ttl
        self._tombstones = 0
        self._sessions = _SessionCache(max_sessions, ttl, self._forget)
        self._adopt()

    def _forget(self, session_id: str) -> None:
        self._delete(self._rows(session_id))

    def _delete(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        super()._delete(rows)
        self._tombstones += len(rows)
        if self._tombstones >= max(_COMPACT_AFTER, self._memories):
            self._compact()

    def _compact(self) -> None:
        # Imported here: the hardened worker uses none of this, and need not load it.
        from qdrant_client import QdrantClient
        from qdrant_client.models import PointStruct

        store = self.memory.vector_store
        local = getattr(store.client, "_client", None)
        location = getattr(local, "location", None)
        if not isinstance(location, str):
            return  # a qdrant server frees deleted points itself
        self._tombstones = 0
        if location != ":memory:":
            # On disk only the live points are stored: reopening loads just those.
            store.client.close()
            store.client = QdrantClient(path=location)
            return
        points, offset = [], None
        while True:
            batch, offset = store.client.scroll(COLLECTION, limit=256, offset=offset,
                                                with_payload=True, with_vectors=True)
            points += [PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in batch]
            if offset is None:
                break
        store.client.delete_collection(COLLECTION)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect",
                                    category=UserWarning)
            store.create_col(store.embedding_model_dims, store.on_disk)
        if points:
            store.client.upsert(COLLECTION, points=points)

    def _adopt(self) -> None:
        client = self.memory.vector_store.client
        last_seen: dict[str, float] = {}
        offset = None
        count = 0
        while True:
            points, offset = client.scroll(COLLECTION, limit=256, offset=offset,
                                           with_payload=["user_id", "at"], with_vectors=False)
            for point in points:
                payload = point.payload or {}
                user = payload.get("user_id")
                if isinstance(user, str):
                    at = float(payload.get("at", 0.0))
                    last_seen[user] = max(at, last_seen.get(user, 0.0))
                    count += 1
            if offset is None:
                break
        self._memories = count
        now = time.time()
        with self._lock:
            for user, at in sorted(last_seen.items(), key=lambda item: item[1]):
                if now - at > self._ttl:
                    self._forget(user)
                    continue
                self._sessions[user] = {**_new_meta(""), "last_seen": at}
                self._trim(user)

    def _trim(self, session_id: str) -> int:
        rows = self._rows(session_id)
        excess = len(rows) - self._max_turns
        if excess > 0:
            self._delete(rows[:excess])
        return min(len(rows), self._max_turns)

    def add_turn(self, session_id: str, role: str, content: str, *, user_agent: str = "",
                 **extra: Any) -> int:
        """Store a turn; return how many turns the session now keeps (at most the cap)."""
        with self._lock:
            meta = self._sessions.get(session_id)
            if meta is None:
                meta = _new_meta(user_agent)
            self._add(session_id, role, content, extra)
            meta["turns"] += 1
            meta["last_seen"] = time.time()
            # Re-inserting refreshes the TTL and may evict the least recently used.
            self._sessions[session_id] = meta
            return self._trim(session_id)

    def history(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._sessions.expire()
        return super().history(session_id)

    def count(self) -> int:
        with self._lock:
            self._sessions.expire()
            return len(self._sessions)

    def memories(self) -> int:
        with self._lock:
            self._sessions.expire()
            return self._memories


class ContextStore(Protocol):
    """What the app and the census use of a context store."""

    def add_turn(self, session_id: str, role: str, content: str, *, user_agent: str = "",
                 **extra: Any) -> int: ...

    def history(self, session_id: str) -> list[dict[str, Any]]: ...

    def count(self) -> int: ...

    def memories(self) -> int: ...

    def points(self) -> int: ...


_store: ContextStore | None = None
_store_settings: config.Settings | None = None
_store_lock = threading.Lock()


def make_store(cfg: config.Settings) -> ContextStore:
    """The store these settings call for (a new one each call)."""
    from api import memory

    if cfg.hardened:
        from api.memory_client import RemoteContextStore

        return RemoteContextStore(cfg.memory_port, timeout=cfg.mcp_timeout)
    if cfg.leak("context"):
        return ContextManager(memory.new_memory(cfg))
    return BoundedContextManager(memory.new_memory(cfg), cfg.max_sessions, cfg.max_turns,
                                 cfg.session_ttl)


def get_store() -> ContextStore:
    """The process's context store: as found, bounded, or in the memory sidecar.

    Made once per settings (tests switch leaks with ``config.reload()``), and
    registered with the census when made.
    """
    global _store, _store_settings
    cfg = config.settings()
    with _store_lock:
        if _store is None or _store_settings is not cfg:
            _store = make_store(cfg)
            _store_settings = cfg
            resource_monitor.register_store(_store)
        return _store
