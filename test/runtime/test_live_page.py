"""`schnitzel run --ui`: the live graph page in real headless Chromium (Debian's chromium, driven
over the DevTools protocol; skipped with the reason when it is absent).

A real run (source and durable queue in one container, a jsonl sink in another): the page's DOM
holds every node of the plan and an edge rate that changes between updates; a screenshot is saved
in the test's output (live-page.png); the sink's container is SIGKILLed and its node turns red on
the page within 2 s. Plus the page's pure parts: layout, the token rule, a self-contained page.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from rt_helpers import output, start_run

from schnitzel_bringup.live import PAGE, allowed, layout

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "delivery"))
from _faults import graph_pids  # noqa: E402

CHROMIUM = next((p for p in (os.environ.get("SCHNITZEL_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium") if p and os.path.exists(p)), None)
#: The issue's bound: a node turns red on the page within 2 s of its container being killed.
RED_WITHIN_S = 2.0

GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a}}
  - {{id: b, restart: on-failure, restart_backoff_s: 3, restart_limit: 3}}
nodes:
  - {{id: src, plugin: synthetic_source, container: a, params: {{mode: counter, rate_hz: 25}}}}
  - {{id: q, plugin: durable_queue, container: a, params: {{path: "{data}/q.db", sinks: [file]}}}}
  - {{id: file, plugin: jsonl_sink, container: b, params: {{path: "{data}/out.jsonl", fsync: never}}}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: file.in}}
"""

STATE_JS = """JSON.stringify({
  nodes: Object.fromEntries([...document.querySelectorAll('[data-node]')].map(
      g => [g.getAttribute('data-node'), g.getAttribute('data-health')])),
  rates: Object.fromEntries([...document.querySelectorAll('[data-edge-label]')].map(
      t => [t.getAttribute('data-edge-label'), t.textContent])),
  groups: [...document.querySelectorAll('[data-container]')].map(r => r.getAttribute('data-container')),
})"""


class Browser:
    """Headless Chromium and one page, over the DevTools protocol (aiohttp's websocket client)."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             "--remote-debugging-port=0", "--window-size=1200,700", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.profile = profile
        self.ws = self.session = None
        self._id = 0

    async def open(self, url: str) -> None:
        import aiohttp
        port_file = self.profile / "DevToolsActivePort"
        assert await _until(lambda: port_file.exists() and port_file.read_text().strip(), 30), "chromium did not start"
        port = port_file.read_text().split()[0]
        self.session = aiohttp.ClientSession()
        targets = []

        async def pages():
            async with self.session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets[:] = [t for t in await r.json() if t.get("type") == "page"]
            return bool(targets)
        for _ in range(100):
            if await pages():
                break
            await asyncio.sleep(0.1)
        self.ws = await self.session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)

    async def call(self, method: str, **params):
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("id") == self._id:
                assert "error" not in msg, msg
                return msg.get("result", {})

    async def state(self) -> dict:
        r = await self.call("Runtime.evaluate", expression=STATE_JS, returnByValue=True)
        return json.loads(r["result"]["value"])

    async def screenshot(self, path: Path) -> None:
        r = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(r["data"]))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.proc.kill()
        self.proc.wait(timeout=10)


async def _until(pred, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(step)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/install-test-deps.sh installs "
                                             "Debian's chromium); the page cannot be opened in a browser here")
def test_live_page_in_chromium_shows_every_node_changing_rates_and_a_killed_container_in_red(
        tmp_path, tagged, free_port):
    name = f"live_{uuid.uuid4().hex[:8]}"
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=name, data=tmp_path / "data"))
    run = start_run(graph, tmp_path / "run", tagged.env, "--quiet", "--ui", "--ui-port", str(free_port))
    browser = Browser(tmp_path / "chromium-profile")

    async def drive() -> None:
        await browser.open(f"http://127.0.0.1:{free_port}/")
        key = "q.out->file.in"
        st = await _until(lambda: _rate_shown(browser, key), 90, step=0.5)
        assert st, output(run)
        assert set(st["nodes"]) == {"src", "q", "file"} and set(st["groups"]) == {"a", "b"}

        async def all_green():
            return all(h == "active" for h in (await browser.state())["nodes"].values())
        assert await _until(all_green, 30), await browser.state()
        first = st["rates"][key]
        # the label changes as packets flow (its age and count move at >= 1 Hz)
        assert await _until(lambda: _changed(browser, key, first), 10), first
        await browser.screenshot(tmp_path / "live-page.png")

        [victim] = graph_pids(name, "b")
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        async def red():
            return (await browser.state())["nodes"].get("file") == "bad"
        assert await _until(red, RED_WITHIN_S, step=0.05), \
            f"node 'file' not red {time.monotonic() - killed:.1f} s after its container was killed"
        print(f"\nkill -> red on the page: {time.monotonic() - killed:.2f} s")
        assert (await browser.state())["nodes"]["src"] != "bad"   # the other container runs on
        await browser.screenshot(tmp_path / "live-page-killed.png")

    try:
        asyncio.run(drive())
    finally:
        asyncio.run(browser.close())
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
    assert (tmp_path / "live-page.png").stat().st_size > 10_000
    print(f"\nscreenshots: {tmp_path / 'live-page.png'}, {tmp_path / 'live-page-killed.png'}")


async def _rate_shown(browser: Browser, key: str):
    st = await browser.state()
    return st if re.match(r"^[1-9][0-9.]*/s", st["rates"].get(key, "")) else None


async def _changed(browser: Browser, key: str, first: str):
    return (await browser.state())["rates"].get(key) not in (None, first)


def test_layout_puts_each_node_in_its_containers_box_in_flow_order():
    n = lambda i, c, up: SimpleNamespace(id=i, container=c, upstream=up, plugin="p", category="x")  # noqa: E731
    plan = SimpleNamespace(graph="g", nodes=[n("snk", "b", ["q"]), n("q", "a", ["src"]), n("src", "a", [])],
                           edges=[SimpleNamespace(src="src.out", dst="q.in"), SimpleNamespace(src="q.out", dst="snk.in")])
    lay = layout(plan)
    assert [g["id"] for g in lay["groups"]] == ["a", "b"]            # upstream container first
    a = lay["groups"][0]
    for nid in ("src", "q"):
        p = lay["nodes"][nid]
        assert a["x"] <= p["x"] and p["x"] + p["w"] <= a["x"] + a["w"] and a["y"] <= p["y"] <= a["y"] + a["h"]
    assert lay["nodes"]["src"]["y"] < lay["nodes"]["q"]["y"]           # data-flow order inside a container
    assert lay["nodes"]["snk"]["x"] > a["x"] + a["w"]


def test_a_token_is_required_from_anywhere_but_loopback():
    assert allowed("127.0.0.1", "/", {}, "s3cret")
    assert not allowed("10.0.0.7", "/events", {}, "s3cret")
    assert not allowed("10.0.0.7", "/events?token=wrong", {}, "s3cret")
    assert allowed("10.0.0.7", "/events?token=s3cret", {}, "s3cret")
    assert allowed("10.0.0.7", "/", {"Authorization": "Bearer s3cret"}, "s3cret")
    assert not allowed("10.0.0.7", "/", {}, "")


def test_the_page_is_self_contained():
    # nothing fetched from anywhere else: no external script, stylesheet, image or font
    assert not re.search(r"<script[^>]*\bsrc=|<link|<img|@import|url\(http|https?://(?!www\.w3\.org/2000/svg)", PAGE)
