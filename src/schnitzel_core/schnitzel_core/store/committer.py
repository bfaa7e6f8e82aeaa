"""GroupCommitter: many small enqueues and acks in one commit."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Tuple

from ..packet import Packet
from .durable import DurableStore
from .errors import StoreError
from .records import AckResult, EnqueueResult
from .schema import ANY_SINK


class GroupCommitter:
    """Batches single packets (and acks) into one commit, bounded by ``max_rows`` and ``max_ms``.

    ``submit`` returns at once; a writer thread commits when ``max_rows`` packets wait or
    the oldest waiting item has waited ``max_ms``. ``on_commit(packets, result)`` runs after
    each commit: only then are the packets accepted. ``on_error(packets, exc)`` runs when
    the commit failed: those packets were NOT accepted. Acks submitted with
    ``submit_ack`` ride in the same transaction (``on_ack_commit(ack_result)``).
    """

    def __init__(self, store: DurableStore, *, max_rows: int = 100, max_ms: float = 5.0,
                 sinks: Any = None, on_commit: Optional[Callable[[List[Packet], EnqueueResult], None]] = None,
                 on_error: Optional[Callable[[List[Packet], StoreError], None]] = None,
                 on_ack_commit: Optional[Callable[[AckResult], None]] = None) -> None:
        if max_rows < 1 or max_ms < 0:
            raise ValueError("group commit needs max_rows >= 1 and max_ms >= 0")
        self.store = store
        self.max_rows = int(max_rows)
        self.max_s = float(max_ms) / 1000.0
        self.sinks = sinks
        self.on_commit = on_commit
        self.on_error = on_error
        self.on_ack_commit = on_ack_commit
        self._buf: List[Packet] = []
        self._acks: List[Tuple[List[int], str]] = []
        self._first = 0.0
        self._cv = threading.Condition()
        self._stop = False
        self._busy = False
        self.commits = 0
        self._thread = threading.Thread(target=self._loop, name="schnitzel-group-commit", daemon=True)
        self._thread.start()

    def submit(self, packet: Packet) -> None:
        with self._cv:
            if not self._buf and not self._acks:
                self._first = time.monotonic()
                self._cv.notify()  # start the max_ms clock in the writer
            self._buf.append(packet)
            if len(self._buf) >= self.max_rows:
                self._cv.notify()

    def submit_ack(self, row_ids: Iterable[int], sink: str = ANY_SINK) -> None:
        with self._cv:
            if not self._buf and not self._acks:
                self._first = time.monotonic()
                self._cv.notify()
            self._acks.append((list(row_ids), sink))
            if len(self._acks) >= self.max_rows:
                self._cv.notify()

    def pending(self) -> int:
        with self._cv:
            return len(self._buf) + (1 if self._busy else 0)

    def _loop(self) -> None:
        import logging

        log = logging.getLogger("schnitzel.store")
        while True:
            with self._cv:
                while not self._stop:
                    if self._buf or self._acks:
                        wait = self._first + self.max_s - time.monotonic()
                        if len(self._buf) >= self.max_rows or len(self._acks) >= self.max_rows or wait <= 0:
                            break
                        self._cv.wait(wait)
                    else:
                        self._cv.wait(0.5)
                if self._stop and not self._buf and not self._acks:
                    return
                batch, self._buf = self._buf[:self.max_rows], self._buf[self.max_rows:]
                acks, self._acks = self._acks, []
                if self._buf:
                    self._first = time.monotonic()
                self._busy = True
            try:
                try:
                    res, ares = self.store.write(batch, self.sinks, acks)
                    self.commits += 1
                except StoreError as exc:
                    if acks:  # the acks are lost with the failed commit: the rows will be re-sent
                        log.warning("acks not recorded: %s", exc)
                    if self.on_error:
                        self.on_error(batch, exc)
                    continue
                if self.on_commit and batch:
                    self.on_commit(batch, res)
                if self.on_ack_commit and acks:
                    self.on_ack_commit(ares)
            except Exception:  # noqa: BLE001 - a callback bug must not stop the writer
                log.exception("group commit callback failed")
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed (or failed)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._first = 0.0  # make the writer commit now
            self._cv.notify_all()
            while self._buf or self._acks or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._first = 0.0
                self._cv.notify_all()
                self._cv.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout)
