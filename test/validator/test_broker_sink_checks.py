"""`schnitzel validate` runs the broker sinks' own checks (SCH316): file, line, parameter, fix."""
import subprocess
import sys
import textwrap

GRAPH = """\
schnitzel: 1
name: broker_check
nodes:
  - {id: src, plugin: synthetic_source, params: {kind: event, rate_hz: 5}}
  - {id: queue, plugin: durable_queue, params: {path: /tmp/q.db, sinks: [mq, kf]}}
  - {id: route, plugin: sink_router, params: {sinks: [mq, kf]}}
  - id: mq
    plugin: mqtt_sink
    params:
      url: mqtt://127.0.0.1:1883
      topic: fleet/+/{kind}
  - id: kf
    plugin: kafka_sink
    params:
      bootstrap_servers: 127.0.0.1:9092
      topic: fleet.{kind}
      config: {acks: "1"}
edges:
  - {from: src.out, to: queue.in}
  - {from: queue.out, to: route.in}
  - {from: route.out0, to: mq.in}
  - {from: route.out1, to: kf.in}
"""


def validate(path):
    return subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_broker_sink_problems_are_errors_at_the_parameter_line(tmp_path):
    g = tmp_path / "graph.yaml"
    g.write_text(GRAPH)
    out = validate(g)
    assert out.returncode == 1, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "Traceback" not in text
    assert f"{g}:11" in text and "SCH316" in text and "'+'" in text          # the topic line of mq
    assert f"{g}:17" in text and "acks" in text                              # the config line of kf
    fixed = GRAPH.replace("fleet/+/{kind}", "fleet/{stream_id}/{kind}").replace('config: {acks: "1"}', "config: {}")
    g.write_text(fixed)
    out = validate(g)
    assert out.returncode == 0, out.stdout + out.stderr
