"""`schnitzel report RUN.json --html OUT.html`: the page a person opens after a run.

- A real run (`schnitzel run --report`, a small graph with a durable queue) is rendered with the
  CLI and opened in headless Chromium (Debian's /usr/bin/chromium; skipped with the reason when
  it is absent): the DOM Chromium builds must hold the status badge, the rate, latency and
  queue-depth plots with data drawn in them, and a table row per node.
- The renderer on hand-made reports: the plots follow the timeline's numbers, names are escaped,
  a report without a timeline still renders (and says why the plots are empty).
- Bad input is one clear message and an exit code, never a traceback.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schnitzel_bringup.report_html import ReportFormatError, check_report, rate_series, render_html

CHROMIUM = next((p for p in (os.environ.get("SCHNITZEL_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium") if p and os.path.exists(p)), None)
CLI = [sys.executable, "-m", "schnitzel_bringup.cli"]

GRAPH = """
schnitzel: 1
name: report_page_{tag}
nodes:
  - {{id: counter, plugin: synthetic_source, params: {{mode: counter, rate_hz: 40}}}}
  - {{id: queue, plugin: durable_queue, params: {{path: "{data}/q.db", sinks: [file]}}}}
  - {{id: file, plugin: jsonl_sink, params: {{path: "{data}/out.jsonl", fsync: never}}}}
edges:
  - {{from: counter.out, to: queue.in}}
  - {{from: queue.out, to: file.in}}
"""


def _dump_dom(page: Path, tmp_path: Path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "<svg" in r.stdout, f"chromium failed ({r.returncode}): {r.stderr[-2000:]}"
    return r.stdout


def _svg(dom: str, plot_id: str) -> str:
    m = re.search(rf'<svg[^>]*id="{plot_id}".*?</svg>', dom, re.S)
    assert m, f"plot {plot_id} is missing from the page"
    return m.group(0)


def _points(svg: str) -> list:
    return [len(p.split()) for p in re.findall(r'<polyline[^>]*points="([^"]*)"', svg)]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/install-test-deps.sh installs "
                                             "Debian's chromium); the page cannot be opened in a browser here")
def test_real_run_report_renders_in_chromium(ros_env, tmp_path):
    tag = os.urandom(4).hex()
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(tag=tag, data=tmp_path / "data"))
    run = subprocess.run(CLI + ["run", str(graph), "--duration", "6", "--report", str(tmp_path / "run.json"),
                                "--run-dir", str(tmp_path / "run"), "-q"], env=ros_env, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode in (0, 3), run.stderr[-3000:]        # 3: degraded (a moment of CPU starvation)
    status = json.loads((tmp_path / "run.json").read_text())["status"]
    page = tmp_path / "page" / "report.html"
    r = subprocess.run(CLI + ["report", str(tmp_path / "run.json"), "--html", str(page)], env=ros_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"status\s+{status}\n", r.stdout) and "events produced" in r.stdout   # the text summary
    assert re.search(r"sink file: delivered / pending / dead-lettered\s+\d+ / \d+ / 0\n", r.stdout), r.stdout
    html = page.read_text()
    # self-contained: nothing to fetch (no script, stylesheet, image or font from anywhere)
    assert not re.search(r"<script|<link|<img|\bsrc=|\bhref=|@import|url\(", html)

    dom = _dump_dom(page, tmp_path)
    assert re.search(rf'id="status"[^>]*>\s*{status}\s*<', dom), f"status badge missing or not {status}"
    for plot, series in (("plot-rate-counter", "counter out"), ("plot-rate-file", "file in")):   # own axes
        rates = _svg(dom, plot)
        assert f'data-series="{series}"' in rates
        assert max(_points(rates)) >= 4, "the rate plot has (almost) no points: the report's timeline is not plotted"
    lat = _svg(dom, "plot-latency")
    assert {"queue", "file"} <= set(re.findall(r'class="bar p50" data-node="([^"]+)"', lat))
    assert _points(_svg(dom, "plot-latency-time"))
    depth = _svg(dom, "plot-queue")
    assert 'data-series="queue depth"' in depth and max(_points(depth)) >= 4
    rows = re.findall(r'<tr data-node="([^"]+)"', dom)
    assert rows == ["counter", "queue", "file"]        # source -> sink


def _report(**over):
    timeline = []
    for i in range(11):
        timeline.append({"t": float(i), "state": "active" if i >= 2 else "configuring", "nodes": {
            "cam": {"in": 0, "out": 10 * i, "drops": 0, "errors": 0, "p50": 0.0, "p99": 0.0},
            "q": {"in": 10 * i, "out": 10 * i, "drops": 0, "errors": 0, "p50": 2.0, "p99": 9.0,
                  "depth": 5 if i == 6 else 0, "oldest_age_ms": 0},
            "out": {"in": 10 * i, "out": 0, "drops": 0, "errors": 0, "p50": 3.0, "p99": 12.0}}})
    rep = {"schnitzel_report": 1, "status": "degraded", "problems": [], "duration_s": 10.0,
           "stopped_by": "duration", "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:00:10+00:00",
           "graph": {"name": "g<script>alert(1)</script>", "file": "g.yaml", "containers": ["main"], "text": "x: <b>"},
           "totals": {"source_packets_out": 100, "sink_packets_in": 100, "drops": 0, "errors": 1},
           "nodes": {"cam": {"plugin": "synthetic_source", "category": "source", "container": "main", "state": "finalized",
                             "packets_in": 0, "packets_out": 100, "drops": 0, "errors": 1, "last_error": "boom <x>",
                             "latency_ms": {"p50": 0, "p95": 0, "p99": 0}, "counters": {}},
                     "q": {"plugin": "durable_queue", "category": "state", "container": "main", "state": "finalized",
                           "packets_in": 100, "packets_out": 100, "drops": 0, "errors": 0,
                           "latency_ms": {"p50": 2, "p95": 5, "p99": 9},
                           "counters": {"depth": "3", "dead_lettered": "2"}, "upstream": ["cam"]},
                     "out": {"plugin": "jsonl_sink", "category": "sink", "container": "main", "state": "finalized",
                             "packets_in": 100, "packets_out": 0, "drops": 0, "errors": 0,
                             "latency_ms": {"p50": 3, "p95": 8, "p99": 12}, "counters": {"delivered": "95"},
                             "upstream": ["q"]}},
           "containers": {"main": {"restarts": 0}}, "events": [{"t": 0.5, "event": "load cam"}],
           "timeline": timeline}
    rep.update(over)
    return rep


def test_plots_follow_the_timeline():
    rep = _report()
    assert rate_series(rep, "cam", "out") == [(float(i), 10.0) for i in range(1, 11)]
    html = render_html(rep)
    assert 'class="badge status-degraded"' in html and "#b45309" in html
    depth = _svg(html, "plot-queue")
    ys = [float(p.split(",")[1]) for p in re.findall(r'points="([^"]*)"', depth)[0].split()]
    assert len(ys) == 11 and len(set(ys)) == 2 and ys.index(min(ys)) == 6   # the one peak, at t = 6 s
    assert "starting up" in _svg(html, "plot-rate-cam")                    # shaded until active (t = 2 s)
    assert "<script>" not in html and "&lt;script&gt;" in html and "boom &lt;x&gt;" in html


def test_report_without_timeline_still_renders():
    html = render_html(_report(timeline=[]))
    assert "no samples in this report" in _svg(html, "plot-rate-cam")
    assert "has no time series" in html
    assert 'data-node="q"' in html      # the per-node latency bars and table come from the totals


def _yticks(svg):
    return re.findall(r'text-anchor="end" class="tick">([^<]+)<', svg)


def test_operator_headline_own_axes_integer_rows_and_source_to_sink_table():
    rep = _report()
    # a 30 frames/s camera and a 2 events/s sink: each plot scaled to its own stream
    for s in rep["timeline"]:
        s["nodes"]["cam"]["out"] = 30 * s["t"]
        s["nodes"]["out"]["in"] = 2 * s["t"]
        s["nodes"]["q"]["depth"] = 2 if s["t"] == 6 else 1
    html = render_html(rep)
    cam, out = _svg(html, "plot-rate-cam"), _svg(html, "plot-rate-out")
    assert "30" in _yticks(cam) and "30" not in _yticks(out) and "2" in _yticks(out)
    # rows are whole numbers: no 0.5 tick on the queue depth axis (peak 2 rows)
    depth_y = _yticks(_svg(html, "plot-queue"))
    assert depth_y == ["0", "1", "2"], depth_y
    # headline: events produced, and per sink delivered / pending / dead-lettered
    assert "events produced" in html and ">100<" in html
    assert re.search(r"sink out: delivered / pending / dead-lettered</div><div class=\"v\">95 / 3 / 2<", html), html
    # the node table in data-flow order, source -> sink (the report lists them sinks first)
    rep["nodes"] = dict(reversed(list(rep["nodes"].items())))
    assert re.findall(r'<tr data-node="([^"]+)"', render_html(rep)) == ["cam", "q", "out"]


def test_not_a_report_is_refused():
    with pytest.raises(ReportFormatError, match="not a schnitzel run report"):
        check_report({"hello": 1})
    with pytest.raises(ReportFormatError):
        check_report([1, 2])


@pytest.mark.parametrize("content, code, message", [
    (None, 2, "does not exist"),
    ("{not json", 1, "is not valid JSON"),
    ('{"a": 1}', 1, "not a schnitzel run report"),
    ('{"schnitzel_report": 1, "nodes": []}', 1, "malformed"),
])
def test_cli_bad_input_is_one_clear_message(tmp_path, content, code, message):
    f = tmp_path / "run.json"
    if content is not None:
        f.write_text(content)
    r = subprocess.run(CLI + ["report", str(f), "--html", str(tmp_path / "x.html")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.html").exists()


def test_cli_writes_page_from_a_report_file(tmp_path):
    f = tmp_path / "run.json"
    f.write_text(json.dumps(_report()))
    r = subprocess.run(CLI + ["report", str(f), "--html", str(tmp_path / "deep" / "p.html"), "-q"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert 'id="plot-latency"' in (tmp_path / "deep" / "p.html").read_text()
