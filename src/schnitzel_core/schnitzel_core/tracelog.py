"""Delivery logs: one JSON line per delivery event, for ``schnitzel trace`` (docs/record-replay.md).

Under ``schnitzel run`` (which sets ``SCHNITZEL_RUN_DIR`` for every process it starts) each
durable queue and each delivering sink appends its events to ``<run dir>/delivery-<node>.jsonl``:

- ``queued`` (queue): the packet was committed to the queue (``status``: ``queued``,
  ``duplicate`` when its key was already queued or delivered, or ``queued_or_duplicate``);
- ``sent`` (queue): a row was forwarded to the sinks (``row``, ``attempt``);
- ``attempt`` (sink): one delivery attempt's result for the packet (``result``: ``delivered``,
  ``retry`` or ``rejected``, with ``reason``);
- ``ack`` (queue): a sink's acknowledgement reached the queue (``sink``, ``outcome``).

Each line: ``{"t": ns since the epoch, "event": ..., "key": idempotency key, "node": ..., ...}``.
Every call is one ``write`` to a file opened with O_APPEND (no user-space buffer), so a process
that is killed loses no event it logged; the store's hot path is untouched (the queue logs
after a commit, the sinks after an attempt).
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

ENV_RUN_DIR = "SCHNITZEL_RUN_DIR"
PREFIX = "delivery-"


class DeliveryLog:
    def __init__(self, path: str, node: str) -> None:
        self.path = path
        self.node = node
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def events(self, event: str, keys: Iterable[str], **fields: Any) -> None:
        """The same event for several keys, in one write."""
        t = time.time_ns()
        tail = json.dumps(fields, separators=(",", ":"), sort_keys=True)[1:] if fields else "}"
        head = f'{{"t":{t},"event":{json.dumps(event)},"node":{json.dumps(self.node)},"key":'
        text = "".join(f"{head}{json.dumps(k)}{',' + tail if fields else tail}\n" for k in keys)
        if text:
            self._write(text.encode("utf-8"))

    def event(self, event: str, key: str, **fields: Any) -> None:
        self.events(event, (key,), **fields)

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, data)
            except OSError:
                pass   # a full disk must not stop delivery; the trace is then incomplete

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def for_node(node_id: str) -> Optional[DeliveryLog]:
    """The delivery log of ``node_id`` in the current run dir, or None outside ``schnitzel run``."""
    run_dir = os.environ.get(ENV_RUN_DIR, "")
    if not run_dir or not os.path.isdir(run_dir):
        return None
    try:
        return DeliveryLog(os.path.join(run_dir, f"{PREFIX}{node_id}.jsonl"), node_id)
    except OSError:
        return None


def read_events(run_dir: str, key: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every logged event of a run (for one key), oldest first; torn last lines are skipped."""
    out: List[Dict[str, Any]] = []
    for f in sorted(Path(run_dir).glob(f"{PREFIX}*.jsonl")):
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if key is not None and key not in line:
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if key is None or ev.get("key") == key:
                    out.append(ev)
    out.sort(key=lambda e: e.get("t", 0))
    return out


__all__ = ["DeliveryLog", "ENV_RUN_DIR", "for_node", "read_events"]
