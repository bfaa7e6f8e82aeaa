"""Blackboard: namespaced, versioned, JSON-only state behind the state_backend boundary."""
import multiprocessing
import sqlite3

import pytest
from schnitzel_core.blackboard import (BackendNotFound, BlackboardError, MemoryBackend, NotSerializableError,
                                       SqliteBackend, VersionConflict, backend_names, open_backend,
                                       restore_handover, save_handover)


@pytest.fixture(params=["memory", "sqlite"])
def board(request, tmp_path):
    b = open_backend(request.param, path=str(tmp_path / "bb.db")) if request.param == "sqlite" \
        else open_backend("memory")
    yield b
    b.close()


def test_both_backends_are_registered_under_the_entry_point_group():
    assert {"memory", "sqlite"} <= set(backend_names())
    assert isinstance(open_backend("memory"), MemoryBackend)


def test_unknown_backend_names_the_installed_ones():
    with pytest.raises(BackendNotFound, match="no state backend named 'redis'; installed: .*memory.*sqlite"):
        open_backend("redis")


def test_get_put_delete_keys_namespaces(board):
    assert board.get("zones", "lobby") is None and board.get("zones", "lobby", 7) == 7
    assert board.put("zones", "lobby", {"count": 1}) == 1
    assert board.put("zones", "lobby", {"count": 2}) == 2
    board.put("zones", "door", [1, 2])
    board.put("handover/g", "track", "x")
    assert board.get("zones", "lobby") == {"count": 2}
    assert board.keys("zones") == ["door", "lobby"]
    assert board.keys("zones", prefix="lo") == ["lobby"]
    assert board.namespaces() == ["handover/g", "zones"]
    assert board.items("zones") == {"door": [1, 2], "lobby": {"count": 2}}
    assert board.delete("zones", "door") is True and board.delete("zones", "door") is False
    assert board.keys("zones") == ["lobby"]
    assert board.clear("zones") == 1 and board.namespaces() == ["handover/g"]


def test_namespaces_are_isolated(board):
    board.put("a", "k", 1)
    board.put("b", "k", 2)
    assert (board.get("a", "k"), board.get("b", "k")) == (1, 2)
    ns = board.namespace("a")
    ns.put("j", True)
    assert ns.keys() == ["j", "k"] and board.keys("b") == ["k"]


def test_values_read_back_are_copies(board):
    board.put("n", "k", {"list": [1]})
    v = board.get("n", "k")
    v["list"].append(2)
    assert board.get("n", "k") == {"list": [1]}


def test_versioned_put_detects_a_concurrent_writer(board):
    v1 = board.put("n", "k", 1)
    board.put("n", "k", 2, expected_version=v1)          # the first writer wins
    with pytest.raises(VersionConflict, match="expected version 1, found version 2"):
        board.put("n", "k", 3, expected_version=v1)      # the second one, with a stale version, loses
    assert board.get_entry("n", "k") == (2, 2, board.get_entry("n", "k").updated_ns)
    assert board.put("n", "new", "x", expected_version=0) == 1   # 0 = only if absent
    with pytest.raises(VersionConflict, match="expected absent"):
        board.put("n", "new", "y", expected_version=0)
    with pytest.raises(VersionConflict):
        board.delete("n", "k", expected_version=1)
    assert board.get("n", "k") == 2


def test_compare_and_set_on_value(board):
    assert board.compare_and_set("lock", "leader", None, "c1") is True    # absent -> set
    assert board.compare_and_set("lock", "leader", None, "c2") is False   # taken
    assert board.compare_and_set("lock", "leader", "c1", {"b": 2, "a": 1}) is True
    assert board.compare_and_set("lock", "leader", {"a": 1, "b": 2}, "c3") is True  # key order irrelevant
    assert board.get("lock", "leader") == "c3"


@pytest.mark.parametrize("value", [{1, 2}, object(), float("nan"), {"x": b"bytes"}])
def test_non_json_values_are_refused_and_nothing_is_stored(board, value):
    with pytest.raises(NotSerializableError, match="not JSON-serialisable"):
        board.put("n", "k", value)
    assert board.keys("n") == []


@pytest.mark.parametrize("ns,key", [("", "k"), ("n", ""), (None, "k"), ("n", "a\nb")])
def test_bad_names_give_a_clear_error(board, ns, key):
    with pytest.raises(BlackboardError, match="must be a non-empty string|control characters"):
        board.put(ns, key, 1)


def test_sqlite_state_survives_a_restart(tmp_path):
    path = str(tmp_path / "state.db")
    b = open_backend("sqlite", path=path)
    b.put("tracker", "tracks", {"7": [1, 2]})
    b.put("tracker", "tracks", {"7": [1, 2, 3]})
    b.close()
    b2 = open_backend("sqlite", path=path)
    assert b2.get_entry("tracker", "tracks")[:2] == ({"7": [1, 2, 3]}, 2)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    b2.close()


def _cas_worker(path, name, n, q):
    b = SqliteBackend(path=path)
    won = 0
    for _ in range(n):
        while True:  # optimistic increment: read, then put at the version read
            e = b.get_entry("c", "n")
            try:
                b.put("c", "n", (e.value if e else 0) + 1, expected_version=e.version if e else 0)
                won += 1
                break
            except VersionConflict:
                continue
    b.close()
    q.put(won)


def test_sqlite_versioned_put_is_atomic_across_processes(tmp_path):
    path = str(tmp_path / "shared.db")
    SqliteBackend(path=path).close()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_cas_worker, args=(path, i, 40, q)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    b = SqliteBackend(path=path)
    assert b.get("c", "n") == 80          # no increment lost to a race
    b.close()


def test_sqlite_refuses_a_foreign_file_and_leaves_it_unchanged(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello, not a database")
    with pytest.raises(BlackboardError, match="not an SQLite file"):
        open_backend("sqlite", path=str(text))
    assert text.read_bytes() == b"hello, not a database"
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(BlackboardError, match="another program"):
        open_backend("sqlite", path=str(other))
    assert other.read_bytes() == before


def test_sqlite_bad_options_are_clear(tmp_path):
    with pytest.raises(BlackboardError, match="needs a file path"):
        open_backend("sqlite")
    with pytest.raises(BlackboardError, match="directory .* does not exist"):
        open_backend("sqlite", path=str(tmp_path / "nope" / "x.db"))
    with pytest.raises(BlackboardError, match="FULL or NORMAL"):
        open_backend("sqlite", path=str(tmp_path / "x.db"), synchronous="OFF")


class _Counter:
    class spec:  # noqa: N801 - stands in for a PluginSpec
        name, version = "counter", "1.0.0"

    def __init__(self, n=0):
        self.n = n

    def get_state(self):
        return {"n": self.n} if self.n else None

    def set_state(self, state):
        self.n = state["n"]


def test_handover_moves_state_from_old_logic_to_new_logic(board):
    old, new = _Counter(41), _Counter()
    assert save_handover(board, "g", "count", old) == 1
    assert board.keys("handover/g") == ["count"]
    assert restore_handover(board, "g", "count", new)["state"] == {"n": 41}
    assert new.n == 41
    # no state saved (get_state() None): nothing restored, the new logic starts fresh
    assert save_handover(board, "g", "other", _Counter(0)) is None
    fresh = _Counter()
    assert restore_handover(board, "g", "other", fresh) is None and fresh.n == 0


def test_input_hold_replays_only_what_the_old_node_had_not_processed():
    from schnitzel_core.blackboard import InputHold, Watermarks
    from schnitzel_core.packet import Packet

    def pk(stream, seq, epoch=0):
        return Packet(stream_id=stream, seq=seq, kind="telemetry", epoch=epoch)

    wm = Watermarks()
    for p in (pk("a", 1), pk("a", 3), pk("a", 2), pk("b", 7)):
        wm.note(p)
    assert wm.as_dict() == {"a": [0, 3], "b": [0, 7]}
    hold = InputHold(limit=10)
    for p in (pk("a", 3), pk("a", 4), pk("b", 7), pk("c", 1), pk("a", 1, epoch=1)):
        hold.hold("in", p)
    out = hold.release({"watermarks": wm.as_dict()})
    # a/3 and b/7 were processed by the old node; a new epoch restarts the numbering
    assert [(p.stream_id, p.seq, p.epoch) for _, p in out] == [("a", 4, 0), ("c", 1, 0), ("a", 1, 1)]
    assert hold.skipped == 2 and len(hold) == 0


def test_input_hold_is_bounded_and_counts_what_it_dropped():
    from schnitzel_core.blackboard import InputHold
    from schnitzel_core.packet import Packet

    hold = InputHold(limit=3)
    for i in range(1, 6):
        hold.hold("in", Packet(stream_id="s", seq=i, kind="k"))
    assert hold.dropped == 2
    assert [p.seq for _, p in hold.release(None)] == [3, 4, 5]
