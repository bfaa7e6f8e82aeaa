"""A fake OpenAI-compatible chat server for tests (stdlib http.server on 127.0.0.1).

    with FakeLLM([answer(graph=..., tests=...), {"status": 500, "body": "boom"}]) as srv:
        srv.base_url          # http://127.0.0.1:PORT/v1
        srv.requests          # every request: {"path", "headers", "body"} (body parsed JSON)

Each POST to /v1/chat/completions takes the next scripted reply (the last one repeats):
``{"content": TEXT}`` a chat completion with that message text; ``{"status": N, "body": TEXT}``
that raw HTTP answer; ``{"sleep": S, ...}`` wait S seconds first (a slow model).
``reject_schema=True`` answers 400 to any request carrying ``response_format`` (a server
without constrained output), like servers that do not know the field.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional


def answer(graph: Any = None, summary: str = "drafted", tests: Any = None, raw: Optional[str] = None) -> Dict[str, Any]:
    """A scripted reply whose message content is the JSON answer schnitzel draft asks for."""
    if raw is not None:
        return {"content": raw}
    return {"content": json.dumps({"graph": graph, "summary": summary, "tests": tests})}


class FakeLLM:
    def __init__(self, script: List[Dict[str, Any]], reject_schema: bool = False) -> None:
        self.script = list(script)
        self.reject_schema = reject_schema
        self.requests: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _next(self) -> Dict[str, Any]:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def __enter__(self) -> "FakeLLM":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the client gave up (timeout test)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n).decode("utf-8")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                    return
                if fake.reject_schema and isinstance(body, dict) and "response_format" in body:
                    self._send(400, json.dumps({"error": {"message": "response_format is not supported"}}))
                    return
                step = fake._next()
                if step.get("sleep"):
                    fake._stop.wait(step["sleep"])
                if "status" in step:
                    self._send(step["status"], step.get("body", ""))
                    return
                content = step["content"]
                if step.get("echo_auth"):
                    content = content.replace("AUTH", self.headers.get("Authorization", ""))
                self._send(200, json.dumps({
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "") if isinstance(body, dict) else "",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": len(content) // 4}}))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
