"""A link emulator in user space, for kernels without ``sch_netem``: it joins two network
interfaces and passes every Ethernet frame between them, both directions, losing each with a
probability and delaying the others by a fixed time, in order (what ``tc netem delay D loss P``
on both ends of a link does). Stdlib only; Linux, root (AF_PACKET).

    python -m schnitzel_bringup.graphtest.linkem DEV_A DEV_B --delay-ms 100 --loss-pct 5 --stats FILE

Frames are read with ``PACKET_VNET_HDR``, so segmentation-offloaded (GSO) frames and frames
whose checksum the sender left to the hardware are passed on whole and intact (the kernel
segments and checksums them on the way out). Frames the emulator's own namespace sends on
either interface are not passed on. ``--stats FILE`` is rewritten every 0.5 s (and at the end)
with ``{"frames": N, "dropped": N, "errors": N}`` over both directions. It prints ``ready`` once
both interfaces are open and runs until SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import socket
import threading
import time
from typing import Deque, Dict, Optional, Tuple

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4


def _open(dev: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((dev, 0))
    return s


class Direction:
    """Frames from ``src`` to ``dst``: lost with probability ``loss``, the rest sent ``delay`` s
    after they arrived, in arrival order (a constant delay keeps the order)."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float, loss: float,
                 stats: Dict[str, int], lock: threading.Lock) -> None:
        self.src, self.dst, self.delay, self.loss = src, dst, delay, loss
        self.stats, self.lock = stats, lock
        self.q: Deque[Tuple[float, bytes]] = collections.deque()
        self.cv = threading.Condition()
        self.rng = random.Random()
        threading.Thread(target=self._send, daemon=True).start()
        threading.Thread(target=self._receive, daemon=True).start()

    def _count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1

    def _receive(self) -> None:
        while True:
            try:
                frame, addr = self.src.recvfrom(1 << 17)
            except OSError:          # the interface went down (a cut link): wait for it
                time.sleep(0.05)
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            self._count("frames")
            if self.rng.random() < self.loss:
                self._count("dropped")
                continue
            with self.cv:
                self.q.append((time.monotonic() + self.delay, frame))
                self.cv.notify()

    def _send(self) -> None:
        while True:
            with self.cv:
                while not self.q:
                    self.cv.wait()
                due, frame = self.q[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.cv:
                self.q.popleft()
            try:
                self.dst.send(frame)
            except OSError:          # e.g. the other side is down: the frame is lost, as on a wire
                self._count("errors")


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m schnitzel_bringup.graphtest.linkem", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dev_a")
    ap.add_argument("dev_b")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="each frame waits this long, each direction")
    ap.add_argument("--loss-pct", type=float, default=0.0, help="each frame is lost with this probability")
    ap.add_argument("--stats", help="JSON file with the frame counts")
    a = ap.parse_args(argv)
    from schnitzel_core.lifetime import die_with_parent
    # `ip netns exec` execs into this process, so its parent is whoever set the link up: a
    # harness or test killed with SIGKILL must not leave the emulator running
    die_with_parent()
    stats: Dict[str, int] = {"frames": 0, "dropped": 0, "errors": 0}
    lock = threading.Lock()
    sa, sb = _open(a.dev_a), _open(a.dev_b)
    for src, dst in ((sa, sb), (sb, sa)):
        Direction(src, dst, a.delay_ms / 1000.0, a.loss_pct / 100.0, stats, lock)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print("ready", flush=True)

    def write() -> None:
        if a.stats:
            with lock:
                text = json.dumps(stats)
            tmp = a.stats + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, a.stats)

    while not done.wait(0.5):
        write()
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
