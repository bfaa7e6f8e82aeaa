"""Idempotency keys in memory: their 128-bit hashes and the sets the store looks them up in
(the delivered-key ledger and the keys still queued)."""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

_blake2b = hashlib.blake2b

# ---------------------------------------------------------------- keys in memory
# A key is known by its 128-bit hash written as 32 lower-case hex digits: for a key made by
# derive_key that is the key itself (nothing to compute, and Python caches a str's hash), any
# other key is hashed (blake2b-128). On disk the same 128 bits are 16 bytes (bytes.fromhex).
_HEX_DIGITS = "0123456789abcdef"


def key_hash(key: str) -> str:
    """The 128-bit hash of an idempotency key as 32 lower-case hex digits. Keys made by
    derive_key (32 lower-case hex digits) are used as they are; any other key is hashed."""
    if len(key) == 32 and not key.strip(_HEX_DIGITS):  # canonical lower-case hex only
        return key
    return _blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def hash_batch(keys: Sequence[str]) -> Tuple[List[str], bytes]:
    """:func:`key_hash` of many keys and the hashes packed (16 bytes each). A batch of
    derive_key keys is checked and packed in one go."""
    if not keys:
        return [], b""
    if min(map(len, keys)) == 32 == max(map(len, keys)):
        joined = "".join(keys)
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = b""
        if raw.hex() == joined:  # canonical lower-case hex only (fromhex also takes A-F, spaces)
            return list(keys), raw
    hs = [key_hash(k) for k in keys]
    return hs, bytes.fromhex("".join(hs))


def key_hashes(keys: Sequence[str]) -> List[str]:
    """:func:`key_hash` of many keys."""
    return hash_batch(keys)[0]


def _split_hashes(blob: bytes) -> List[str]:
    """16-byte hashes packed in ``blob`` -> hex strings."""
    h = blob.hex()
    return [h[i:i + 32] for i in range(0, len(h), 32)]


def _hash_array(blob: bytes) -> Any:
    """16-byte hashes packed in ``blob`` -> int64 (n, 2) array (high, low halves, signed)."""
    return np.frombuffer(blob, dtype=">i8").reshape(-1, 2).astype(np.int64)


class _KeySet:
    """Key hashes in memory: sorted numpy arrays (hi, lo halves) plus a set of recent
    additions (hex strings) merged in batches."""

    MERGE_AT = 65536

    def __init__(self) -> None:
        self.hi: Any = np.empty(0, np.int64)
        self.lo: Any = np.empty(0, np.int64)
        self.recent: set = set()

    def __len__(self) -> int:
        return len(self.hi) + len(self.recent)

    def load(self, keys: Any) -> None:
        """Replace the set: ``keys`` is a list of hex hashes, their packed bytes, or an int64
        (n, 2) array."""
        self.recent = set()
        if isinstance(keys, (bytes, bytearray)):
            arr = _hash_array(bytes(keys))
        elif isinstance(keys, list):
            arr = _hash_array(bytes.fromhex("".join(keys)))
        else:
            arr = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(arr[:, 0], kind="stable")
        self.hi, self.lo = arr[order, 0].copy(), arr[order, 1].copy()

    def add(self, hs: Iterable[str]) -> None:
        self.recent.update(hs)
        # merge when the recent keys reach MERGE_AT or 1/8 of the sorted part: a merge costs a
        # copy of the sorted part, so this keeps its cost per key about constant
        if len(self.recent) < max(self.MERGE_AT, len(self.hi) >> 3):
            return
        # sort only the new keys and insert them in place (O(n) copy, not a sort of the whole
        # set: a ledger of a million keys merges every MERGE_AT deliveries). contains() needs
        # the high halves sorted; equal high halves are scanned.
        arr = _hash_array(bytes.fromhex("".join(self.recent)))
        arr = arr[np.argsort(arr[:, 0], kind="stable")]
        pos = np.searchsorted(self.hi, arr[:, 0])
        self.hi, self.lo = np.insert(self.hi, pos, arr[:, 0]), np.insert(self.lo, pos, arr[:, 1])
        self.recent = set()

    def contains(self, hs: Sequence[str], blob: Optional[bytes] = None) -> List[bool]:
        """Membership of each hash; ``blob``: the same hashes packed, if at hand."""
        if not hs:
            return []
        recent = self.recent
        out = [h in recent for h in hs] if recent else [False] * len(hs)
        return self._in_base(hs, out, blob)

    def _in_base(self, hs: Sequence[str], out: List[bool], blob: Optional[bytes] = None) -> List[bool]:
        """Sets out[i] for each hash found in the sorted part (those already True are kept)."""
        n = len(self.hi)
        if n:
            q = _hash_array(blob if blob is not None else bytes.fromhex("".join(hs)))
            idx = np.searchsorted(self.hi, q[:, 0])
            hit = idx < n
            hit[hit] &= self.hi[idx[hit]] == q[hit, 0]
            for i in np.flatnonzero(hit).tolist():
                j = int(idx[i])
                while j < n and self.hi[j] == q[i, 0]:  # equal high halves: check the low half
                    if self.lo[j] == q[i, 1]:
                        out[i] = True
                        break
                    j += 1
        return out


class _KnownKeys(_KeySet):
    """Hashes of every key an enqueue must refuse: the keys still queued plus, with the
    ledger on, the keys delivered within the retention window. A confirmed delivery moves a
    key from one to the other, so it changes nothing here. A _KeySet plus the keys removed
    since it was built (dropped, dead-lettered, delivered without a ledger); rebuilt from the
    file when removals pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.removed: set = set()

    def load(self, keys: Any) -> None:
        super().load(keys)
        self.removed = set()

    # Invariant: no hash is both in ``recent`` and in ``removed``; ``removed`` only masks the
    # sorted part. contains = (in recent or in the sorted part) and not in removed.
    def add(self, hs: Iterable[str]) -> None:
        rm = self.removed
        if rm:
            hs = list(hs)
            rm.difference_update(hs)
        super().add(hs)

    def discard(self, hs: Iterable[str]) -> None:
        hs = list(hs)
        recent, rm = self.recent, self.removed
        was_recent = [h in recent for h in hs]
        recent.difference_update(hs)
        # a hash can be in the sorted part too (merged, removed, added again): mask it there
        in_base = self._in_base(hs, [False] * len(hs)) if any(was_recent) and len(self) > len(recent) else None
        for i, h in enumerate(hs):
            if not was_recent[i] or (in_base is not None and in_base[i]):
                rm.add(h)

    def contains(self, hs: Sequence[str], blob: Optional[bytes] = None) -> List[bool]:
        out = super().contains(hs, blob)
        rm = self.removed
        if rm:
            out = [o and h not in rm for o, h in zip(out, hs)]
        return out
