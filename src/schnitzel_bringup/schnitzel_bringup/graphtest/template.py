"""What ``schnitzel init NAME`` writes: a graph and a test file that passes against it."""
from __future__ import annotations

from pathlib import Path
from typing import List

GRAPH = """\
# {name}: readings -> a threshold rule -> durable queue -> JSONL file.
# Run it:  schnitzel run graph.yaml --duration 10      Test it:  schnitzel test .
schnitzel: 1
name: {name}
nodes:
  - id: sensor
    plugin: synthetic_source
    params: {{mode: sensor, rate_hz: 5, field: temp_c, offset: 20.0, amplitude: 15.0, period_s: 10.0,
             stream_id: sensor}}
  - id: alert                    # tag hot readings; every reading is forwarded
    plugin: rules
    params:
      rules:
        - {{when: "payload.temp_c > 30", action: emit, set_meta: {{alert: hot}}}}
      default: emit
  - id: queue
    plugin: durable_queue
    params: {{path: "${{env:{upper}_DATA:-runs/{name}}}/queue.db", sinks: [file]}}
  - id: file
    plugin: jsonl_sink
    params: {{path: "${{env:{upper}_DATA:-runs/{name}}}/events.jsonl"}}
edges:
  - {{from: sensor.out, to: alert.in}}
  - {{from: alert.out, to: queue.in}}
  - {{from: queue.out, to: file.in}}
"""

TESTS = """\
# Tests of graph.yaml (docs/testing-graphs.md).  Run: schnitzel test .
schnitzel_test: 1
graph: graph.yaml
cases:
  - name: hot readings are tagged, others pass untouched
    inputs:
      - at: alert.in
        packets:
          - {{kind: sensor.reading, payload: {{temp_c: 21.5}}}}
          - {{kind: sensor.reading, payload: {{temp_c: 34.0}}}}
    expect:
      - at: alert.out
        count: 2
        packets:
          - {{payload.temp_c: 21.5, meta.alert: {{exists: false}}}}
          - {{payload.temp_c: 34.0, meta.alert: hot}}
        order: stamp
"""


def write_template(target: Path, name: str) -> List[Path]:
    target.mkdir(parents=True, exist_ok=True)
    g, t = target / "graph.yaml", target / "graph.test.yaml"
    g.write_text(GRAPH.format(name=name, upper=name.upper()), encoding="utf-8")
    t.write_text(TESTS.format(name=name), encoding="utf-8")
    return [g, t]
