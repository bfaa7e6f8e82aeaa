"""The blackboard: the one place nodes share state, behind the ``state_backend`` plugin boundary.

A blackboard is a keyed store with namespaces. Values are JSON-serialisable
(checked on every put; a value read back is a fresh copy, so changing it never
changes the store). Every key carries a version (1 on creation, +1 on each
put), which makes optimistic concurrency possible::

    board = open_backend("memory")                 # or open_backend("sqlite", path="state.db")
    v = board.put("zones/counts", "lobby", {"n": 3})
    board.put("zones/counts", "lobby", {"n": 4}, expected_version=v)   # VersionConflict if raced
    board.compare_and_set("locks", "leader", expected=None, value="c1")  # True: key was absent

Backends register under the entry point group ``schnitzel.state_backends``
(name = ``module:Class``, the class derives from :class:`StateBackend`):

- ``memory``: a dict inside one process (one container); fast, gone on exit.
- ``sqlite``: SQLite through SQLAlchemy 2 Core in WAL mode, for state that must
  survive a restart; several processes may share one file (writes take the
  write lock with ``BEGIN IMMEDIATE``, so compare-and-set holds across them).

Hot replacement hands a stateful node's state over through the namespace
``handover/<graph>`` (:func:`save_handover`, :func:`restore_handover`; see
docs/hot-replacement.md).
"""
from __future__ import annotations

import copy
import json
import os
import threading
import time
from importlib import metadata as importlib_metadata
from typing import Any, Dict, List, Mapping, Optional, Tuple

ENTRY_POINT_GROUP = "schnitzel.state_backends"

#: Namespace prefix of state handed over between an old and a new node on hot replacement.
HANDOVER_NAMESPACE = "handover"

MAX_NAME_LEN = 512
_MISSING = object()


# ---------------------------------------------------------------- errors
class BlackboardError(Exception):
    """Base of every error a blackboard raises; the message is meant for the user."""


class NotSerializableError(BlackboardError, TypeError):
    """The value cannot be stored as JSON."""


class VersionConflict(BlackboardError):
    """A versioned put or delete found another version than the one expected."""

    def __init__(self, namespace: str, key: str, expected: Optional[int], actual: Optional[int]) -> None:
        exp = "absent" if not expected else f"version {expected}"
        act = "absent" if actual is None else f"version {actual}"
        super().__init__(f"blackboard {namespace}/{key}: expected {exp}, found {act}")
        self.namespace, self.key, self.expected, self.actual = namespace, key, expected, actual


class BackendNotFound(BlackboardError):
    """No state backend of that name is installed (or it failed to import)."""


# ---------------------------------------------------------------- helpers
def _check_name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise BlackboardError(f"blackboard {what} must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME_LEN:
        raise BlackboardError(f"blackboard {what} {name[:40]!r}... is longer than {MAX_NAME_LEN} characters")
    if any(ord(ch) < 32 for ch in name):
        raise BlackboardError(f"blackboard {what} {name!r} contains control characters")
    return name


def encode_value(value: Any, where: str = "value") -> str:
    """The JSON text of ``value``; raises :class:`NotSerializableError` with the reason."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise NotSerializableError(f"blackboard {where} is not JSON-serialisable: {exc}") from None


class Entry(tuple):
    """``(value, version)`` of one key; ``updated_ns`` is the wall-clock time of the last put."""

    __slots__ = ()

    def __new__(cls, value: Any, version: int, updated_ns: int = 0) -> "Entry":
        return tuple.__new__(cls, (value, version, updated_ns))

    value = property(lambda self: self[0])
    version = property(lambda self: self[1])
    updated_ns = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"Entry(value={self.value!r}, version={self.version})"


# ---------------------------------------------------------------- interface
class StateBackend:
    """The ``state_backend`` plugin boundary. Subclasses implement the ``_``-prefixed primitives.

    Versions: a key that does not exist has no version. ``expected_version=0`` means
    "only if absent"; ``None`` means "whatever is there".
    """

    #: Name under which the backend is registered (``schnitzel.state_backends``).
    name = "abstract"
    #: True when what is stored survives the process.
    durable = False

    # --- primitives ---------------------------------------------------------
    def _read(self, namespace: str, key: str) -> Optional[Tuple[str, int, int]]:
        raise NotImplementedError

    def _write(self, namespace: str, key: str, text: Optional[str], expected_version: Optional[int],
               expected_text: Any = _MISSING) -> Tuple[bool, Optional[int]]:
        """Atomically: check the expectation, then store ``text`` (None deletes).

        Returns ``(done, version)``: on success the new version (None after a delete);
        on a failed expectation ``(False, current version or None)``.
        """
        raise NotImplementedError

    def _keys(self, namespace: str, prefix: str) -> List[str]:
        raise NotImplementedError

    def _namespaces(self) -> List[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; the backend is unusable afterwards."""

    # --- public API -----------------------------------------------------------
    def get(self, namespace: str, key: str, default: Any = None) -> Any:
        """The value stored under ``namespace``/``key``, or ``default``."""
        e = self.get_entry(namespace, key)
        return default if e is None else e.value

    def get_entry(self, namespace: str, key: str) -> Optional[Entry]:
        """``Entry(value, version)`` or None when the key is absent."""
        row = self._read(_check_name("namespace", namespace), _check_name("key", key))
        if row is None:
            return None
        text, version, updated = row
        return Entry(json.loads(text), version, updated)

    def version(self, namespace: str, key: str) -> Optional[int]:
        e = self.get_entry(namespace, key)
        return None if e is None else e.version

    def put(self, namespace: str, key: str, value: Any, *, expected_version: Optional[int] = None) -> int:
        """Store ``value``; returns the key's new version.

        With ``expected_version`` the put only happens if the key is at that version
        (0: absent); otherwise :class:`VersionConflict` is raised and nothing changes.
        """
        _check_name("namespace", namespace), _check_name("key", key)
        text = encode_value(value, f"value for {namespace}/{key}")
        if expected_version is not None and (not isinstance(expected_version, int) or expected_version < 0):
            raise BlackboardError(f"expected_version must be an integer >= 0, not {expected_version!r}")
        done, version = self._write(namespace, key, text, expected_version)
        if not done:
            raise VersionConflict(namespace, key, expected_version, version)
        assert version is not None
        return version

    def compare_and_set(self, namespace: str, key: str, expected: Any, value: Any) -> bool:
        """Store ``value`` only if the current value equals ``expected`` (None: key absent).

        Returns whether the value was stored. Comparison is on the JSON form, so
        ``{"a": 1, "b": 2}`` equals ``{"b": 2, "a": 1}``.
        """
        _check_name("namespace", namespace), _check_name("key", key)
        text = encode_value(value, f"value for {namespace}/{key}")
        exp = None if expected is None else encode_value(expected, "expected value")
        done, _ = self._write(namespace, key, text, None, expected_text=exp)
        return done

    def delete(self, namespace: str, key: str, *, expected_version: Optional[int] = None) -> bool:
        """Remove a key; returns whether it existed. ``expected_version`` as for :meth:`put`."""
        _check_name("namespace", namespace), _check_name("key", key)
        if expected_version is not None:
            done, version = self._write(namespace, key, None, expected_version)
            if not done:
                raise VersionConflict(namespace, key, expected_version, version)
            return True
        existed = self._read(namespace, key) is not None
        self._write(namespace, key, None, None)
        return existed

    def keys(self, namespace: str, prefix: str = "") -> List[str]:
        """The keys of a namespace (sorted), optionally only those starting with ``prefix``."""
        return sorted(self._keys(_check_name("namespace", namespace), prefix or ""))

    def items(self, namespace: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for k in self.keys(namespace):
            e = self.get_entry(namespace, k)
            if e is not None:
                out[k] = e.value
        return out

    def namespaces(self) -> List[str]:
        """Namespaces that hold at least one key (sorted)."""
        return sorted(self._namespaces())

    def clear(self, namespace: str) -> int:
        """Delete every key of a namespace; returns how many were deleted."""
        n = 0
        for k in self.keys(namespace):
            n += bool(self.delete(namespace, k))
        return n

    def namespace(self, namespace: str) -> "Namespace":
        """A view bound to one namespace (what a node gets as ``ctx.blackboard``)."""
        return Namespace(self, namespace)

    def __enter__(self) -> "StateBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Namespace:
    """A blackboard restricted to one namespace: ``ns.get(key)``, ``ns.put(key, value)``, ..."""

    def __init__(self, backend: StateBackend, namespace: str) -> None:
        self.backend = backend
        self.name = _check_name("namespace", namespace)

    def get(self, key: str, default: Any = None) -> Any:
        return self.backend.get(self.name, key, default)

    def get_entry(self, key: str) -> Optional[Entry]:
        return self.backend.get_entry(self.name, key)

    def put(self, key: str, value: Any, *, expected_version: Optional[int] = None) -> int:
        return self.backend.put(self.name, key, value, expected_version=expected_version)

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        return self.backend.compare_and_set(self.name, key, expected, value)

    def delete(self, key: str, *, expected_version: Optional[int] = None) -> bool:
        return self.backend.delete(self.name, key, expected_version=expected_version)

    def keys(self, prefix: str = "") -> List[str]:
        return self.backend.keys(self.name, prefix)

    def items(self) -> Dict[str, Any]:
        return self.backend.items(self.name)


# ---------------------------------------------------------------- in-memory
class MemoryBackend(StateBackend):
    """State inside one process (one container): every node of the container shares it."""

    name = "memory"
    durable = False

    def __init__(self, **_options: Any) -> None:
        self._data: Dict[str, Dict[str, Tuple[str, int, int]]] = {}
        self._lock = threading.Lock()

    def _read(self, namespace: str, key: str) -> Optional[Tuple[str, int, int]]:
        with self._lock:
            return self._data.get(namespace, {}).get(key)

    def _write(self, namespace, key, text, expected_version, expected_text=_MISSING):
        with self._lock:
            ns = self._data.get(namespace, {})
            cur = ns.get(key)
            cur_version = cur[1] if cur else None
            if expected_version is not None and (cur_version or 0) != expected_version:
                return False, cur_version
            if expected_text is not _MISSING and (cur[0] if cur else None) != expected_text:
                return False, cur_version
            if text is None:
                if cur is not None:
                    del ns[key]
                    if not ns:
                        self._data.pop(namespace, None)
                return True, None
            version = (cur_version or 0) + 1
            self._data.setdefault(namespace, {})[key] = (text, version, time.time_ns())
            return True, version

    def _keys(self, namespace: str, prefix: str) -> List[str]:
        with self._lock:
            return [k for k in self._data.get(namespace, {}) if k.startswith(prefix)]

    def _namespaces(self) -> List[str]:
        with self._lock:
            return [n for n, d in self._data.items() if d]

    def close(self) -> None:
        with self._lock:
            self._data = {}


# ---------------------------------------------------------------- durable (SQLite)
_APPLICATION_ID = 0x537A4242  # "SzBB": marks a file as a schnitzel blackboard
_SCHEMA_VERSION = 1


class SqliteBackend(StateBackend):
    """Durable state: SQLite (WAL) through SQLAlchemy 2 Core; survives a restart.

    ``synchronous``: ``FULL`` (survives a power cut) or ``NORMAL`` (survives a crash
    of the process, faster). Several processes may open the same file.
    """

    name = "sqlite"
    durable = True

    def __init__(self, path: str = "", synchronous: str = "FULL", **_options: Any) -> None:
        from sqlalchemy import (BigInteger, Column, Integer, MetaData, PrimaryKeyConstraint, String,
                                Table, Text, create_engine, event)
        from sqlalchemy.pool import StaticPool

        if not path:
            raise BlackboardError("the sqlite state backend needs a file path (option 'path')")
        synchronous = str(synchronous).upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise BlackboardError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = os.path.abspath(os.fspath(path))
        d = os.path.dirname(self.path)
        if not os.path.isdir(d):
            raise BlackboardError(f"blackboard {self.path}: directory {d} does not exist")
        existed = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if existed:
            with open(self.path, "rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    raise BlackboardError(f"blackboard {self.path} is not an SQLite file; it was left "
                                          "unchanged (choose another path or move it aside)")
        self._lock = threading.RLock()
        md = MetaData()
        self._t = Table("entries", md, Column("ns", String, nullable=False), Column("key", String, nullable=False),
                        Column("value", Text, nullable=False), Column("version", Integer, nullable=False),
                        Column("updated_ns", BigInteger, nullable=False), PrimaryKeyConstraint("ns", "key"))
        self._engine = create_engine(f"sqlite:///{self.path}", poolclass=StaticPool,
                                     connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun explicitly below

        self._immediate = False

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn: Any) -> None:
            # writes take the write lock up front so a compare-and-set is atomic across
            # processes; reads and setup run in autocommit and take no lock
            if self._immediate:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            self._conn = self._engine.connect()
            c = self._conn
            if existed:
                app_id = c.exec_driver_sql("PRAGMA application_id").scalar()
                if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and self._has_foreign_tables()):
                    raise BlackboardError(f"blackboard {self.path} is an SQLite file of another program; "
                                          "it was left unchanged (choose another path)")
            c.exec_driver_sql("PRAGMA journal_mode=WAL")
            c.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
            c.exec_driver_sql(f"PRAGMA application_id={_APPLICATION_ID}")
            c.exec_driver_sql(f"PRAGMA user_version={_SCHEMA_VERSION}")
            c.exec_driver_sql("CREATE TABLE IF NOT EXISTS entries (ns VARCHAR NOT NULL, key VARCHAR NOT NULL, "
                              "value TEXT NOT NULL, version INTEGER NOT NULL, updated_ns BIGINT NOT NULL, "
                              "PRIMARY KEY (ns, key))")
            c.commit()
        except BlackboardError:
            self._engine.dispose()
            raise
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy/sqlite errors become one clear message
            self._engine.dispose()
            raise BlackboardError(f"blackboard {self.path}: cannot open: {getattr(exc, 'orig', exc)}") from None

    def _has_foreign_tables(self) -> bool:
        rows = self._conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        return any(r[0] != "entries" for r in rows)

    def _run(self, what: str, fn: Any) -> Any:
        try:
            with self._lock:
                return fn(self._conn)
        except BlackboardError:
            raise
        except Exception as exc:  # noqa: BLE001
            try:
                self._conn.rollback()  # never leave a transaction (and its lock) open
            except Exception:  # noqa: BLE001
                pass
            raise BlackboardError(f"blackboard {self.path}: cannot {what}: {getattr(exc, 'orig', exc)}") from None

    def _read(self, namespace: str, key: str) -> Optional[Tuple[str, int, int]]:
        from sqlalchemy import select

        t = self._t

        def fn(c: Any) -> Any:
            row = c.execute(select(t.c.value, t.c.version, t.c.updated_ns)
                            .where(t.c.ns == namespace, t.c.key == key)).first()
            c.rollback()  # end the implicit transaction: keeps no lock
            return None if row is None else (row[0], row[1], row[2])

        return self._run("read", fn)

    def _write(self, namespace, key, text, expected_version, expected_text=_MISSING):
        from sqlalchemy import delete, insert, select, update

        t = self._t

        def fn(c: Any) -> Any:
            self._immediate = True
            try:
                tx = c.begin()
            finally:
                self._immediate = False
            with tx:
                row = c.execute(select(t.c.value, t.c.version).where(t.c.ns == namespace, t.c.key == key)).first()
                cur_version = row[1] if row else None
                if expected_version is not None and (cur_version or 0) != expected_version:
                    return False, cur_version
                if expected_text is not _MISSING and (row[0] if row else None) != expected_text:
                    return False, cur_version
                if text is None:
                    if row is not None:
                        c.execute(delete(t).where(t.c.ns == namespace, t.c.key == key))
                    return True, None
                now = time.time_ns()
                if row is None:
                    c.execute(insert(t).values(ns=namespace, key=key, value=text, version=1, updated_ns=now))
                    return True, 1
                c.execute(update(t).where(t.c.ns == namespace, t.c.key == key)
                          .values(value=text, version=cur_version + 1, updated_ns=now))
                return True, cur_version + 1

        return self._run("write", fn)

    def _keys(self, namespace: str, prefix: str) -> List[str]:
        from sqlalchemy import select

        t = self._t

        def fn(c: Any) -> Any:
            rows = c.execute(select(t.c.key).where(t.c.ns == namespace)).fetchall()
            c.rollback()
            return [r[0] for r in rows if r[0].startswith(prefix)]

        return self._run("list keys", fn)

    def _namespaces(self) -> List[str]:
        from sqlalchemy import select

        t = self._t

        def fn(c: Any) -> Any:
            rows = c.execute(select(t.c.ns).distinct()).fetchall()
            c.rollback()
            return [r[0] for r in rows]

        return self._run("list namespaces", fn)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            finally:
                self._engine.dispose()


# ---------------------------------------------------------------- registry
_BUILTIN = {"memory": MemoryBackend, "sqlite": SqliteBackend}


def backend_names() -> List[str]:
    """Names of the installed state backends (entry points plus the built-ins)."""
    names = set(_BUILTIN)
    names.update(ep.name for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def load_backend_class(name: str) -> type:
    """The backend class registered under ``name``; :class:`BackendNotFound` with the choices."""
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not raised
                raise BackendNotFound(f"state backend {name!r} ({ep.value}) failed to import: {exc}") from None
            if not (isinstance(cls, type) and issubclass(cls, StateBackend)):
                raise BackendNotFound(f"state backend {name!r} ({ep.value}) is not a StateBackend subclass")
            return cls
    if name in _BUILTIN:  # works before the entry points are installed (source checkout)
        return _BUILTIN[name]
    raise BackendNotFound(f"no state backend named {name!r}; installed: {', '.join(backend_names())}")


def open_backend(name: str = "memory", **options: Any) -> StateBackend:
    """Open a state backend by its registered name, e.g. ``open_backend("sqlite", path="s.db")``."""
    cls = load_backend_class(name)
    try:
        return cls(**options)
    except BlackboardError:
        raise
    except TypeError as exc:
        raise BlackboardError(f"state backend {name!r}: bad options {sorted(options)}: {exc}") from None


# ---------------------------------------------------------------- hot-replacement hand-over
# What the node adapter does for a stateful node (docs/hot-replacement.md, "Adapter duties"):
#   every node:    watermarks.note(packet) for each input packet the logic has processed;
#   on deactivate: save_handover(board, graph, node_id, logic, watermarks.as_dict())
#   loaded with option handover=1: between configure and activate, hold.hold(port, packet)
#                  instead of dropping inputs; on activate, before logic.activate():
#                  rec = restore_handover(board, graph, node_id, logic); then deliver
#                  hold.release(rec) in order.

def handover_namespace(graph: str) -> str:
    return f"{HANDOVER_NAMESPACE}/{graph}"


class Watermarks:
    """The newest ``(epoch, seq)`` a node has processed, per input stream. Thread-safe."""

    def __init__(self) -> None:
        self._wm: Dict[str, Tuple[int, int]] = {}
        self._lock = threading.Lock()

    def note(self, packet: Any) -> None:
        sid = getattr(packet, "stream_id", "")
        if not sid:
            return
        mark = (int(getattr(packet, "epoch", 0)), int(getattr(packet, "seq", 0)))
        with self._lock:
            if mark > self._wm.get(sid, (-1, -1)):
                self._wm[sid] = mark

    def as_dict(self) -> Dict[str, List[int]]:
        with self._lock:
            return {k: [e, s] for k, (e, s) in sorted(self._wm.items())}


class InputHold:
    """Inputs a replacement node receives after configure and before activate.

    On activate they are released in arrival order, except those the old node had
    already processed (at or below its watermark for their stream), so every packet
    is processed exactly once across the old and the new node. Bounded: beyond
    ``limit`` packets the oldest are dropped and counted (``dropped``).
    """

    def __init__(self, limit: int = 10000) -> None:
        self.limit = max(1, int(limit))
        self._items: List[Tuple[str, Any]] = []
        self._lock = threading.Lock()
        self.dropped = 0
        self.skipped = 0

    def hold(self, port: str, packet: Any) -> None:
        with self._lock:
            self._items.append((port, packet))
            if len(self._items) > self.limit:
                del self._items[0]
                self.dropped += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def release(self, record: Any = None) -> List[Tuple[str, Any]]:
        """Held inputs newer than the watermarks in ``record`` (what restore_handover returned)."""
        wm = (record or {}).get("watermarks") or {} if isinstance(record, dict) else {}
        with self._lock:
            items, self._items = self._items, []
        out = []
        for port, packet in items:
            mark = wm.get(getattr(packet, "stream_id", ""))
            if mark is not None and (int(packet.epoch), int(packet.seq)) <= (int(mark[0]), int(mark[1])):
                self.skipped += 1       # the old node processed it already (its effect is in the state)
                continue
            out.append((port, packet))
        return out


def save_handover(board: StateBackend, graph: str, node_id: str, logic: Any,
                  watermarks: Optional[Mapping[str, Any]] = None) -> Optional[int]:
    """Adapter hook, on ``deactivate`` of a stateful node: store ``logic.get_state()``.

    Key: namespace ``handover/<graph>``, key ``<node_id>`` (the graph node id, not the
    temporary ROS name). ``watermarks``: :meth:`Watermarks.as_dict` of the inputs the
    logic processed. Returns the stored version, or None when the logic has no state
    (``get_state()`` returned None) and nothing was stored.
    """
    state = logic.get_state()
    if state is None:
        return None
    spec = getattr(logic, "spec", None)
    return board.put(handover_namespace(graph), node_id,
                     {"plugin": getattr(spec, "name", ""), "version": getattr(spec, "version", ""),
                      "saved_ns": time.time_ns(), "state": state,
                      "watermarks": dict(watermarks or {})})


def restore_handover(board: StateBackend, graph: str, node_id: str, logic: Any) -> Optional[Dict[str, Any]]:
    """Adapter hook, on ``activate`` of a node loaded with option ``handover=1``, before
    ``logic.activate()``: call ``logic.set_state(state)`` with what :func:`save_handover`
    stored. Returns the hand-over record (truthy) or None when there was nothing to restore."""
    entry = board.get(handover_namespace(graph), node_id)
    if not isinstance(entry, dict) or "state" not in entry:
        return None
    logic.set_state(copy.deepcopy(entry["state"]))
    return entry
