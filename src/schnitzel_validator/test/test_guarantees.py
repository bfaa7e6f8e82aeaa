"""`schnitzel validate` says which edges carry the durable-delivery guarantee (issue 20.0)."""
import json

import sch_fixture_plugins
from schnitzel_validator import validate_text

REGISTRY = sch_fixture_plugins.registry()

GRAPH = """\
schnitzel: 1
name: egress
nodes:
  - {id: cam, plugin: camera, params: {uri: "rtsp://cam"}}
  - {id: t, plugin: ticker}
  - {id: ev, plugin: event_builder}
  - {id: q, plugin: durable_queue}
  - {id: http, plugin: http_sink, params: {url: "https://b.example"}}
  - {id: log, plugin: log_sink}
edges:
  - {from: cam.frames, to: log.in}
  - {from: t.out, to: ev.in}
  - {from: ev.events, to: q.in, outbox: durable}
  - {from: q.out, to: http.in}
"""


def test_validate_lists_each_edges_delivery_guarantee():
    report = validate_text(GRAPH, "g.yaml", REGISTRY)
    assert report.valid, report.format_text()
    by_edge = {d["edge"]: d for d in report.delivery}
    assert by_edge["ev.events -> q.in"]["guarantee"] == "at-least-once (outbox)"
    assert "in memory and in a file" in by_edge["ev.events -> q.in"]["detail"]
    assert by_edge["q.out -> http.in"]["guarantee"] == "at-least-once (queue)"
    assert by_edge["cam.frames -> log.in"]["guarantee"] == "latest-only"
    assert by_edge["t.out -> ev.in"]["guarantee"] == "best-effort"
    text = report.format_text()
    assert "info: edge ev.events -> q.in: at-least-once (outbox)" in text
    assert "info: edge cam.frames -> log.in: latest-only: by design" in text
    assert json.loads(report.to_json())["delivery"] == report.delivery


def test_invalid_graph_lists_no_guarantees():
    report = validate_text(GRAPH.replace("plugin: durable_queue", "plugin: nope"), "g.yaml", REGISTRY)
    assert not report.valid and report.delivery == []
