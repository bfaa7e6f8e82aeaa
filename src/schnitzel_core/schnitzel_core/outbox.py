"""The outbox of a node that feeds a durable queue (docs/delivery.md, "The outbox").

A packet the queue has not committed yet lives only in DDS buffers and in the queue
process's memory: if that process dies, it is gone. So the sending node keeps every
packet it sends on such an edge in a bounded :class:`Outbox` until the queue
acknowledges the commit, and re-sends what is still unacknowledged after
``resend_s`` (the idempotency key makes a copy of a committed packet a no-op in the
queue's store).

Wire format (no new topic): each packet sent through an outbox carries two meta
entries, ``schnitzel.outbox`` (the sender id ``<node>/<port>#<token>``, the token new
for each memory outbox, kept in the file of a durable one) and ``schnitzel.outbox_seq``
(the sender's sequence number). After each group commit the queue strips them and
publishes ONE ``schnitzel_msgs/DeliveryAck`` per sender on ``/<graph>/_delivery/ack``:
outcome ``accepted``, ``queue_id`` = the sender's node id, ``sink_id`` = the queue's id,
``idempotency_key`` = the sender id and ``seq_ranges`` = the committed sequence numbers as
``[first, last]`` pairs (:func:`to_ranges`), so a commit of 100 packets costs one small
message.

Pure Python (stdlib sqlite3 and msgpack for the durable mode); no rclpy.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sqlite3
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import msgpack

from .packet import Packet, PayloadRef

META_SENDER = "schnitzel.outbox"
META_SEQ = "schnitzel.outbox_seq"
MODES = ("memory", "durable")
DEFAULT_MAX = 10_000        # packets kept per outbox
DEFAULT_RESEND_S = 1.0      # an unacknowledged packet is sent again after this
BACKOFF_MAX = 8             # while no queue acknowledges anything: at most resend_s * this


class OutboxError(RuntimeError):
    """A durable outbox file that cannot be opened or written (the message names it)."""


# ------------------------------------------------------------------ wire helpers
def to_ranges(seqs: Iterable[int]) -> List[int]:
    """Sequence numbers -> flat ``[first0, last0, first1, last1, ...]`` (sorted, merged)."""
    out: List[int] = []
    for s in sorted(set(int(x) for x in seqs)):
        if out and s == out[-1] + 1:
            out[-1] = s
        else:
            out += [s, s]
    return out


def from_ranges(flat: Sequence[int]) -> Iterator[int]:
    """The inverse of :func:`to_ranges`."""
    for i in range(0, len(flat) - 1, 2):
        yield from range(int(flat[i]), int(flat[i + 1]) + 1)


def sender_node(sender: str) -> str:
    """The node id in a sender id ``<node>/<port>#<token>``."""
    return sender.split("/", 1)[0]


def untag(packet: Packet) -> Tuple[Optional[str], int, Packet]:
    """(sender, seq, packet without the outbox meta); (None, 0, packet) for an untagged one."""
    sender = packet.meta.get(META_SENDER)
    if sender is None:
        return None, 0, packet
    try:
        seq = int(packet.meta.get(META_SEQ, ""))
    except ValueError:
        return None, 0, packet
    meta = {k: v for k, v in packet.meta.items() if k not in (META_SENDER, META_SEQ)}
    return sender, seq, dataclasses.replace(packet, meta=meta)


class AcceptedBatch:
    """Queue side: the committed packets of one group commit, per sender -> ranges."""

    def __init__(self) -> None:
        self.by_sender: Dict[str, List[int]] = {}

    def add(self, sender: str, seq: int) -> None:
        self.by_sender.setdefault(sender, []).append(seq)

    def acks(self) -> List[Tuple[str, List[int]]]:
        """[(sender id, flat ranges)] - one acknowledgement per sender."""
        return [(s, to_ranges(seqs)) for s, seqs in self.by_sender.items()]


# ------------------------------------------------------------------ the outbox
def _pack(p: Packet) -> bytes:
    d = dataclasses.asdict(p)
    return msgpack.packb(d, use_bin_type=True)


def _unpack(b: bytes) -> Packet:
    d = msgpack.unpackb(b, raw=False)
    ref = d.get("payload_ref")
    if ref is not None:
        d["payload_ref"] = PayloadRef(**ref)
    return Packet(**d)


class Outbox:
    """Packets sent to durable queue(s) and not yet acknowledged by all of them. Thread-safe.

    ``add`` tags the packet (sender id, sequence number) and keeps it; ``ack`` forgets
    what a queue committed; ``due`` hands back, oldest send first, the packets whose last
    send is ``resend_s`` old (and counts them as sent again). When ``max_packets`` are
    kept, ``add`` drops the oldest one and counts it in ``dropped``: the only way a packet
    leaves an outbox unacknowledged.

    Back-off: while no acknowledgement at all arrives between two re-send rounds (the queue
    is down, though DDS may still list its dead reader as matched), the re-send interval
    doubles up to ``resend_s * BACKOFF_MAX``; the first acknowledgement (the queue is back)
    sets it to ``resend_s`` again, so everything older is due at once.

    ``path`` (durable mode): every kept packet is also written to this SQLite file
    (WAL, ``synchronous=NORMAL``: survives the process, not a power cut) before ``add``
    returns, and a new Outbox on the same file starts with them (due at once) and the
    same sender id, so a restarted run re-sends what the last one had not seen committed.
    """

    def __init__(self, sender: str, queues: int = 1, *, max_packets: int = DEFAULT_MAX,
                 resend_s: float = DEFAULT_RESEND_S, path: Optional[str] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_packets < 1:
            raise ValueError(f"outbox {sender}: max_packets must be >= 1, got {max_packets}")
        #: how many queues this port feeds: a packet leaves once that many distinct queues
        #: acknowledged it (a count, not ids, so that replacing one downstream queue by another
        #: leaves the sender's ports_json, and so the sender, untouched)
        self.queues = max(1, int(queues))
        self.max_packets = int(max_packets)
        self.resend_s = float(resend_s)
        self.clock = clock
        self.path = path
        self._lock = threading.Lock()
        # seq -> [tagged packet, last send (clock), ids of the queues that confirmed (fan-out only)]
        # kept in order of last send, oldest first (a re-send moves an entry to the end)
        self._box: "collections.OrderedDict[int, List[Any]]" = collections.OrderedDict()
        self.dropped = 0
        self.resent = 0
        self.acked = 0
        self._db: Optional[sqlite3.Connection] = None
        self.interval = self.resend_s      # the current re-send interval (back-off above)
        self._acked_since = True           # an ack arrived since the last back-off check
        self._next_check = 0.0
        token = uuid.uuid4().hex[:12]
        next_seq = 1
        if path:
            token, next_seq = self._open(path, sender, token)
        self.sender_id = f"{sender}#{token}"
        self._next = next_seq

    # -- durable file
    def _open(self, path: str, sender: str, token: str) -> Tuple[str, int]:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS box (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
            row = db.execute("SELECT v FROM meta WHERE k='token'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('token', ?)", (token,))
            else:
                token = row[0]
            rows = db.execute("SELECT seq, data FROM box ORDER BY seq").fetchall()
            last = db.execute("SELECT v FROM meta WHERE k='last_seq'").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {sender}: cannot open its file {path}: {exc}; "
                              "check the directory (SCHNITZEL_STATE_DIR) is writable") from None
        self._db = db
        for seq, data in rows:
            self._box[int(seq)] = [_unpack(data), float("-inf"), None]   # due at once
        top = max([int(last[0]) if last else 0] + [int(s) for s, _ in rows])
        return token, top + 1

    def _write(self, sql: str, args: Sequence[Any]) -> None:
        try:
            self._db.execute(sql, args)   # autocommit: one transaction per statement
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.sender_id}: cannot write {self.path}: {exc}") from None

    # -- the sending side
    def add(self, packet: Packet) -> Packet:
        """Keep ``packet`` (tagged) and return the tagged packet to send."""
        with self._lock:
            seq = self._next
            self._next += 1
            tagged = packet.with_meta(**{META_SENDER: self.sender_id, META_SEQ: seq})
            if self._db is not None:
                self._write("INSERT INTO box VALUES (?, ?)", (seq, _pack(tagged)))
                if seq % 1000 == 0 or not self._box:   # the next seq survives an empty box
                    self._write("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(seq),))
            self._box[seq] = [tagged, self.clock(), None]
            while len(self._box) > self.max_packets:
                old, _ = self._box.popitem(last=False)
                self.dropped += 1
                if self._db is not None:
                    self._write("DELETE FROM box WHERE seq=?", (old,))
            return tagged

    def ack(self, queue: str, ranges: Sequence[int]) -> int:
        """The queue ``queue`` committed these sequence numbers; returns how many left the box."""
        gone: List[int] = []
        with self._lock:
            self._acked_since = True
            self.interval = self.resend_s   # a queue answers: stop backing off
            for seq in from_ranges(ranges):
                e = self._box.get(seq)
                if e is None:
                    continue
                if self.queues > 1:   # fan-out to several queues: wait for each
                    e[2] = (e[2] or set()) | {queue}
                    if len(e[2]) < self.queues:
                        continue
                del self._box[seq]
                gone.append(seq)
            self.acked += len(gone)
            if gone and self._db is not None:
                for i in range(0, len(r := to_ranges(gone)), 2):
                    self._write("DELETE FROM box WHERE seq BETWEEN ? AND ?", (r[i], r[i + 1]))
        return len(gone)

    def due(self, limit: int = 100) -> List[Packet]:
        """Up to ``limit`` packets unacknowledged ``resend_s`` after their last send, oldest
        send first; they count as sent now."""
        now = self.clock()
        out: List[Packet] = []
        with self._lock:
            while self._box and len(out) < limit:
                seq, e = next(iter(self._box.items()))
                if e[1] > now - self.interval:
                    break
                e[1] = now
                self._box.move_to_end(seq)
                out.append(e[0])
            self.resent += len(out)
            if out and now >= self._next_check:   # once per interval: did anyone answer?
                if not self._acked_since:
                    self.interval = min(self.interval * 2, self.resend_s * BACKOFF_MAX)
                self._acked_since = False
                self._next_check = now + self.interval
        return out

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._box)

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                try:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(self._next - 1),))
                except sqlite3.Error:
                    pass
                db.close()


def from_config(sender: str, cfg: Dict[str, Any], durable_path: Callable[[], str]) -> Outbox:
    """An Outbox from the ``outbox`` object of a ``ports_json`` output (docs/contracts.md):
    ``{"mode": "memory"|"durable", "max": N, "resend_s": S, "queues": number of queues fed}``."""
    mode = cfg.get("mode", "memory")
    if mode not in MODES:
        raise ValueError(f"outbox mode must be one of {', '.join(MODES)}, got {mode!r}")
    return Outbox(sender, int(cfg.get("queues", 1)), max_packets=int(cfg.get("max", DEFAULT_MAX)),
                  resend_s=float(cfg.get("resend_s", DEFAULT_RESEND_S)),
                  path=durable_path() if mode == "durable" else None)


__all__ = ["Outbox", "OutboxError", "AcceptedBatch", "META_SENDER", "META_SEQ", "MODES", "DEFAULT_MAX",
           "DEFAULT_RESEND_S", "to_ranges", "from_ranges", "sender_node", "untag", "from_config"]
