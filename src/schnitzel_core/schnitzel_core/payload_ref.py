"""Large payloads by reference: blobs on a shared file system instead of bytes in the message.

A payload above the graph's ``payload_ref.threshold_bytes`` leaves a node on a DDS edge as a
:class:`~schnitzel_core.packet.PayloadRef` (``file://`` URI, size, sha256) to a blob written
once under ``<dir>/<graph>/`` (default dir ``/dev/shm/schnitzel``: tmpfs, so writing and
reading a frame is a memory copy, not disk I/O, and every process of the user on the host
sees it). The receiving adapter reads and verifies the blob (size and sha256; a missing or
tampered blob is a :class:`PayloadRefError`, counted by the caller, never passed on) and
hands its plugin a normal inline packet. Blobs are content-addressed (the file name is the
sha256), so re-sending the same packet writes nothing new.

Lifetime (docs/packet.md, "Payloads by reference"):

- every blob has a lease of ``ttl_s`` from its last write, which covers the DDS hop to
  every subscriber;
- a durable queue that stores a by-reference packet *holds* the blob for that row: a small
  hold file ``<dir>/<graph>/.holds/<queue id>/<key hash>`` (text: sha256, newline, key).
  A held blob outlives its lease, the producer process and a restart of the queue;
- a blob with no hold whose lease has run out is deleted by :meth:`BlobStore.sweep` (run by
  every writer at most every ``ttl_s / 4``); releasing the last hold (the row's last
  acknowledgement) deletes the blob at once when its lease has run out.

Nothing here imports rclpy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .codecs import CodecError
from .packet import Packet, PayloadRef, derive_key

DEFAULT_DIR = "/dev/shm/schnitzel"
DEFAULT_TTL_S = 30.0
HOLDS = ".holds"
_SCHEME = "file://"
_SHA_NAME = re.compile(r"[0-9a-f]{64}")


class PayloadRefError(CodecError):
    """A reference that cannot be resolved: missing blob, wrong size, wrong sha256, foreign URI.

    ``reason`` is one of ``missing``, ``size``, ``sha256``, ``uri``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class RefSettings:
    """The graph's ``payload_ref`` setting (docs/graph-spec.md)."""

    threshold_bytes: int = 0          # payloads larger than this go by reference; 0 = never
    ttl_s: float = DEFAULT_TTL_S      # lease of an unheld blob after its last write
    dir: str = DEFAULT_DIR            # blobs live in <dir>/<graph>/

    KEYS = ("threshold_bytes", "ttl_s", "dir")

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "RefSettings":
        """Checked settings; ValueError naming the key and the fix."""
        if not d:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError("payload_ref must be a mapping: {threshold_bytes: 1048576, ttl_s: 30, dir: /dev/shm/schnitzel}")
        unknown = sorted(set(d) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"payload_ref has unknown key(s) {unknown}; allowed: {', '.join(cls.KEYS)}")
        th = d.get("threshold_bytes", 0)
        if isinstance(th, bool) or not isinstance(th, int) or th < 0:
            raise ValueError(f"payload_ref.threshold_bytes must be an integer >= 0 (0 = never), got {th!r}")
        ttl = d.get("ttl_s", DEFAULT_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError(f"payload_ref.ttl_s must be a number > 0 (seconds), got {ttl!r}")
        root = d.get("dir", DEFAULT_DIR)
        if not isinstance(root, str) or not os.path.isabs(root):
            raise ValueError(f"payload_ref.dir must be an absolute directory path, got {root!r}")
        return cls(int(th), float(ttl), root)

    def as_dict(self) -> Dict[str, Any]:
        return {"threshold_bytes": self.threshold_bytes, "ttl_s": self.ttl_s, "dir": self.dir}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """The blobs of one graph: write, read and verify, hold, release, sweep.

    ``clock`` (seconds, wall time: leases must agree between processes) is injectable for tests.
    """

    def __init__(self, graph: str, root: str = DEFAULT_DIR, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time, threshold_bytes: int = 0) -> None:
        self.dir = os.path.join(os.path.abspath(root), graph.strip("/").replace("/", "_") or "graph")
        self.ttl_s = float(ttl_s)
        self.threshold_bytes = int(threshold_bytes)   # what externalise() callers use (adapter)
        self.clock = clock
        self._next_sweep = 0.0
        self._lock = threading.Lock()
        os.makedirs(os.path.join(self.dir, HOLDS), mode=0o700, exist_ok=True)

    @classmethod
    def for_settings(cls, graph: str, settings: RefSettings) -> "BlobStore":
        return cls(graph, settings.dir, settings.ttl_s, threshold_bytes=settings.threshold_bytes)

    # ---- writing
    def path_of(self, sha256: str) -> str:
        return os.path.join(self.dir, sha256)

    def put(self, data: bytes) -> PayloadRef:
        """Write ``data`` as a blob (atomically: temp file + rename) and return its reference.
        An existing blob with the same content gets a fresh lease instead."""
        sha = _sha256(data)
        path = self.path_of(sha)
        now = self.clock()
        try:
            os.utime(path, (now, now))   # same content already there: renew its lease
        except FileNotFoundError:
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.utime(tmp, (now, now))
            os.replace(tmp, path)
        self.maybe_sweep()
        return PayloadRef(uri=_SCHEME + path, size=len(data), sha256=sha)

    def externalise(self, packet: Packet, threshold_bytes: int) -> Packet:
        """``packet`` itself when its payload is at most ``threshold_bytes`` (or it already
        goes by reference); else a copy whose payload is a reference to a blob."""
        if threshold_bytes <= 0 or len(packet.payload) <= threshold_bytes or packet.payload_ref is not None:
            return packet
        ref = self.put(packet.payload)
        return dataclasses.replace(packet, payload=b"", payload_ref=ref, meta=dict(packet.meta))

    # ---- reading
    def owns(self, ref: Optional[PayloadRef]) -> bool:
        """Is ``ref`` one of this graph's blobs (the only references the runtime resolves)?"""
        if ref is None or not ref.uri.startswith(_SCHEME):
            return False
        head, name = os.path.split(ref.uri[len(_SCHEME):])
        return head == self.dir and _SHA_NAME.fullmatch(name) is not None

    def read(self, ref: PayloadRef) -> bytes:
        """The blob's bytes, verified against the reference's size and sha256."""
        if not self.owns(ref):
            raise PayloadRefError(f"payload reference {ref.uri!r} is not a blob of {self.dir}", "uri")
        path = ref.uri[len(_SCHEME):]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise PayloadRefError(f"payload blob {path} is missing (expired or deleted; "
                                  f"lease ttl_s={self.ttl_s:g})", "missing") from None
        if len(data) != ref.size:
            raise PayloadRefError(f"payload blob {path} has {len(data)} bytes, the reference says {ref.size}",
                                  "size")
        sha = _sha256(data)
        if sha != ref.sha256:
            raise PayloadRefError(f"payload blob {path} has sha256 {sha}, the reference says {ref.sha256}",
                                  "sha256")
        return data

    def resolve(self, packet: Packet) -> Packet:
        """An inline copy of a by-reference packet (``packet`` itself when it is not one of ours)."""
        ref = packet.payload_ref
        if not self.owns(ref) or packet.payload:
            return packet
        data = self.read(ref)
        return dataclasses.replace(packet, payload=data, payload_ref=None, meta=dict(packet.meta))

    # ---- holds (durable queues)
    def _hold_path(self, holder: str, key: str) -> str:
        return os.path.join(self.dir, HOLDS, holder, derive_key("hold", key))

    def hold(self, packet: Packet, holder: str) -> bool:
        """Keep the blob of ``packet`` (one of ours) while ``holder`` stores it under its key.
        False when the packet is inline or not ours; PayloadRefError when the blob is gone
        or its size differs (the caller counts it and does not accept the packet)."""
        ref = packet.payload_ref
        if not self.owns(ref):
            return False
        path = ref.uri[len(_SCHEME):]
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise PayloadRefError(f"payload blob {path} is missing; packet {packet.packet_id} not accepted",
                                  "missing") from None
        if size != ref.size:
            raise PayloadRefError(f"payload blob {path} has {size} bytes, the reference says {ref.size}", "size")
        hp = self._hold_path(holder, packet.idempotency_key)
        os.makedirs(os.path.dirname(hp), mode=0o700, exist_ok=True)
        tmp = hp + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{ref.sha256}\n{packet.idempotency_key}")
        os.replace(tmp, hp)
        return True

    def holds(self, holder: Optional[str] = None) -> Iterator[Tuple[str, str, str]]:
        """(holder, sha256, key) of every hold (of one holder)."""
        base = os.path.join(self.dir, HOLDS)
        try:
            holders = [holder] if holder else os.listdir(base)
        except FileNotFoundError:
            return
        for h in holders:
            d = os.path.join(base, h)
            try:
                names = os.listdir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for n in names:
                if n.endswith(".tmp"):
                    continue
                try:
                    with open(os.path.join(d, n), encoding="utf-8") as f:
                        sha, _, key = f.read().partition("\n")
                except FileNotFoundError:
                    continue
                yield h, sha, key

    def _held(self) -> set:
        return {sha for _h, sha, _k in self.holds()}

    def release(self, holder: str, key: str) -> bool:
        """Drop ``holder``'s hold on the blob of ``key``; delete the blob when that was its
        last hold and its lease has run out. True when a hold was released."""
        hp = self._hold_path(holder, key)
        try:
            with open(hp, encoding="utf-8") as f:
                sha = f.read().partition("\n")[0]
            os.unlink(hp)
        except FileNotFoundError:
            return False
        if sha not in self._held():
            self._delete_if_expired(sha)
        return True

    def reconcile(self, holder: str, still_stored: Callable[[str], bool]) -> int:
        """Release every hold of ``holder`` whose key ``still_stored(key)`` says is gone
        (delivered to every sink, purged, dropped). Returns how many were released."""
        n = 0
        for _h, _sha, key in list(self.holds(holder)):
            if not still_stored(key) and self.release(holder, key):
                n += 1
        return n

    # ---- garbage collection
    def _delete_if_expired(self, sha: str, now: Optional[float] = None) -> bool:
        path = self.path_of(sha)
        try:
            if (self.clock() if now is None else now) - os.stat(path).st_mtime < self.ttl_s:
                return False
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def sweep(self) -> int:
        """Delete every unheld blob whose lease has run out (and stale temp files).
        Returns how many blobs were deleted."""
        now = self.clock()
        held = self._held()
        n = 0
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return 0
        for name in names:
            if name == HOLDS or name in held:
                continue
            if name.endswith(".tmp"):
                try:   # a writer that died mid-write
                    if now - os.stat(os.path.join(self.dir, name)).st_mtime > self.ttl_s:
                        os.unlink(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass
                continue
            if self._delete_if_expired(name, now):
                n += 1
        return n

    def maybe_sweep(self) -> int:
        """:meth:`sweep`, at most every ``ttl_s / 4`` seconds."""
        now = self.clock()
        with self._lock:
            if now < self._next_sweep:
                return 0
            self._next_sweep = now + self.ttl_s / 4
        return self.sweep()

    def blobs(self) -> List[str]:
        """The sha256 of every blob present (for tests and `du`-style checks)."""
        try:
            return sorted(n for n in os.listdir(self.dir) if n != HOLDS and not n.endswith(".tmp"))
        except FileNotFoundError:
            return []


__all__ = ["BlobStore", "DEFAULT_DIR", "DEFAULT_TTL_S", "PayloadRefError", "RefSettings"]
