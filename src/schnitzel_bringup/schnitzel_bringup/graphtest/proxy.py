"""A small fault-injecting TCP proxy, in the spirit of Toxiproxy's toxics.

    proxy = FaultProxy(upstream_port)      # listens on 127.0.0.1:proxy.port (listen_host= another address)
    proxy.set_toxic("latency", latency_ms=500)  # or "refuse", "reset"; set_toxic(None) heals
    proxy.affected["reset"]                # connections the toxic actually hit (a fault that fired)

- latency: every chunk in either direction waits ``latency_ms`` before it is forwarded;
- refuse: the listening socket is closed, so connects get ECONNREFUSED (re-opened on heal), and
  the open connections are reset;
- reset: open connections are reset (RST, SO_LINGER 0) when the toxic is set, and every
  connection accepted while it is on is reset at once; nothing is forwarded.

``affected[toxic]`` counts the connections the toxic hit (and, for refuse, the connects refused),
so a caller can tell a fault that fired from one that found nothing to hit.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Dict, Optional


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0,
                 listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = listen_host
        self.toxic: Optional[str] = None
        self.latency_s = 0.0
        self.affected: Dict[str, int] = {"latency": 0, "refuse": 0, "reset": 0}
        self.connections = 0
        self._live: set = set()   # client-side sockets of the open connections
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: Optional[socket.socket] = None
        self.port = port
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(64)
        s.settimeout(0.2)
        self.port = s.getsockname()[1]
        self._sock = s

    def set_toxic(self, toxic: Optional[str], latency_ms: float = 0.0) -> None:
        with self._lock:
            prev, self.toxic, self.latency_s = self.toxic, toxic, latency_ms / 1000.0
            if toxic == "refuse" and self._sock is not None:
                try:   # shutdown first: it stops the listening at once, even while accept() waits
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._sock.close()
                self._sock = None
            elif prev == "refuse" and toxic != "refuse":
                self._listen()
            live = list(self._live) if toxic in ("refuse", "reset") else []
        for conn in live:
            self._rst(conn)
            self.affected[toxic] += 1  # type: ignore[index]

    @staticmethod
    def _rst(conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        except OSError:
            pass

    def refused_probe(self) -> bool:
        """While refusing: a connect here is refused (what a client sees); counted as affected."""
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                s = self._sock
            if s is None:
                time.sleep(0.05)
                continue
            try:
                conn, _ = s.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                toxic = self.toxic
                self.connections += 1
            if toxic == "reset":
                self.affected["reset"] += 1
                self._rst(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._live.add(conn)
        try:
            self._forward(conn)
        finally:
            with self._lock:
                self._live.discard(conn)

    def _forward(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()   # upstream down: the client sees a reset, as it would without the proxy
            return
        counted = [False]

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    if self.toxic == "latency" and self.latency_s > 0:
                        if not counted[0]:
                            counted[0] = True
                            self.affected["latency"] += 1
                        time.sleep(self.latency_s)
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for x in (a, b):
                    try:
                        x.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(up, conn), daemon=True)
        t.start()
        pump(conn, up)
        t.join(5)
        for x in (conn, up):
            try:
                x.close()
            except OSError:
                pass
