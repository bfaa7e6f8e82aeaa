"""System test (issue 6): every logic/compute/state/policy/control plugin in one graph runs
through the real runtime (`schnitzel run`: validator, compiler, container, lifecycle manager,
ROS parameters) without an error, and packets flow through all of them.

camera -> sampler -> convert -> resize -> onnx_model (a model built here) and motion_detector;
onnx_model -> tracker -> fusion (with a 20 Hz range sensor) -> zones -> dedup -> rules ->
event_builder -> router -> duplicator -> switch -> sink; range -> map -> schema_validate ->
window -> sink; camera + tracks -> annotate -> sink.
"""
import json
import subprocess
import sys
import uuid

from schnitzel_nodes.plugins.testmodels import brightest_spot_detector

GRAPH = """\
schnitzel: 1
name: {name}
nodes:
  - {{id: cam, plugin: synthetic_source, params: {{mode: pattern, rate_hz: 10, width: 64, height: 48, count: 30, deterministic_stamps: true, start_ns: 1700000000000000000}}}}
  - {{id: rs, plugin: synthetic_source, params: {{mode: sensor, rate_hz: 20, count: 60, field: range_m, deterministic_stamps: true, start_ns: 1700000000000000000}}}}
  - {{id: sample, plugin: sampler, params: {{mode: fps, fps: 10}}}}
  - {{id: conv, plugin: convert, params: {{encoding: bgr8}}}}
  - {{id: rsz, plugin: resize, params: {{width: 64, height: 48, mode: letterbox}}}}
  - {{id: det, plugin: onnx_model, params: {{model: {model}, class_map: [person, car], score_threshold: 0.0}}}}
  - {{id: mot, plugin: motion_detector, params: {{warmup_frames: 2}}}}
  - {{id: track, plugin: tracker, params: {{min_hits: 1}}}}
  - {{id: fuse, plugin: fusion, params: {{window_ms: 300, field: range_m}}}}
  - {{id: zones, plugin: zones, params: {{zones: [{{id: all, polygon: [[0,0],[64,0],[64,48],[0,48]]}}], emit: [enter, inside]}}}}
  - {{id: dedup, plugin: dedup, params: {{cooldown_s: 1}}}}
  - {{id: rules, plugin: rules, params: {{rules: [{{when: "payload.zone == 'all'", action: route, port: out1}}]}}}}
  - {{id: events, plugin: event_builder, params: {{site_id: plant-3, severity_by_type: {{person: high}}}}}}
  - {{id: mapn, plugin: map, params: {{fields: {{r: payload.range_m}}, constants: {{unit: m}}}}}}
  - {{id: chk, plugin: schema_validate, params: {{schema: {{type: object, required: [r]}}}}}}
  - {{id: win, plugin: window, params: {{field: r, size: 5}}}}
  - {{id: router, plugin: router, params: {{routes: [{{port: out0, kind: "event"}}]}}}}
  - {{id: dup, plugin: duplicator}}
  - {{id: sw, plugin: switch, params: {{active: in1}}}}
  - {{id: overlay, plugin: annotate, params: {{zones: [{{id: all, polygon: [[0,0],[64,0],[64,48],[0,48]]}}]}}}}
  - {{id: out, plugin: stdout_sink}}
  - {{id: out2, plugin: stdout_sink}}
  - {{id: out3, plugin: stdout_sink}}
edges:
  - {{from: cam.out, to: sample.in}}
  - {{from: sample.out, to: conv.in}}
  - {{from: conv.out, to: rsz.in}}
  - {{from: rsz.out, to: det.in}}
  - {{from: rsz.out, to: mot.in}}
  - {{from: det.out, to: track.in}}
  - {{from: track.out, to: fuse.in}}
  - {{from: rs.out, to: fuse.aux}}
  - {{from: fuse.out, to: zones.in}}
  - {{from: zones.events, to: dedup.in}}
  - {{from: dedup.out, to: rules.in}}
  - {{from: rules.out1, to: events.in}}
  - {{from: events.out, to: router.in}}
  - {{from: router.out0, to: dup.in}}
  - {{from: dup.out0, to: sw.in1}}
  - {{from: sw.out, to: out.in}}
  - {{from: rs.out, to: mapn.in}}
  - {{from: mapn.out, to: chk.in}}
  - {{from: chk.out, to: win.in}}
  - {{from: win.out, to: out2.in}}
  - {{from: cam.out, to: overlay.frames}}
  - {{from: track.out, to: overlay.detections}}
  - {{from: overlay.out, to: out3.in}}
  - {{from: mot.out, to: out3.in}}
"""


def test_logic_plugins_run_in_one_graph_without_errors(tmp_path, ros_env):
    model = brightest_spot_detector(str(tmp_path / "det.onnx"), 64, 48, box=20)
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=f"logic_{uuid.uuid4().hex[:8]}", model=model))
    res = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--duration", "6",
                          "--quiet", "--run-dir", str(tmp_path / "run"), "--report", str(tmp_path / "report.json")],
                         env=ros_env, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "ok", report.get("problems")
    nodes = report["nodes"]
    assert {n: v["errors"] for n, v in nodes.items() if v["errors"]} == {}
    c = {n: v.get("counters", {}) for n, v in nodes.items()}
    assert nodes["cam"]["packets_out"] == 30 and nodes["rs"]["packets_out"] == 60
    for n in ("sample", "conv", "rsz", "det", "mot", "track", "fuse", "zones", "mapn", "chk"):
        assert nodes[n]["packets_in"] > 0 and nodes[n]["packets_out"] > 0, n
    assert c["det"]["inferences"] == str(nodes["det"]["packets_in"])
    assert int(c["fuse"].get("fused", 0)) + int(c["fuse"].get("misses", 0)) == nodes["fuse"]["packets_out"]
    assert int(c["fuse"].get("fused", 0)) > 0  # same stamp base: most frames find a range sample
    assert int(c["dedup"]["suppressed"]) > 0  # zone_inside every frame, passed once per second of stamps
    assert nodes["events"]["packets_out"] == nodes["dedup"]["packets_out"] > 0
    assert nodes["dup"]["packets_out"] == 4 * nodes["dup"]["packets_in"]
    assert nodes["out"]["packets_in"] == nodes["events"]["packets_out"]
    assert c["chk"]["valid"] == "60" and nodes["win"]["packets_out"] == 12  # 60 samples, windows of 5
    assert nodes["out3"]["packets_in"] > 0 and nodes["overlay"]["packets_out"] > 0
