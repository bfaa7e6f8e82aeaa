"""The graph loader: shape checks with exact positions, interpolation, the Graph model."""
from pathlib import Path

import pytest

from schnitzel_core.graph import DEFAULT_CONTAINER
from schnitzel_core.graph_loader import GraphLoadError, load_graph, parse_graph

GOOD = """\
schnitzel: 1
name: lobby
containers:
  - id: vision
    host: edge1
    restart: never
    restart_backoff_s: 2
    restart_limit: 0
  - id: delivery
nodes:
  - id: cam
    plugin: video_source
    container: vision
    params:
      uri: ${env:CAM_URI:-file:///data/lobby.mp4}
      fps: ${env:FPS:-15}
      label: "${env:FPS:-15}"
      when: 2024-01-02
  - id: det
    plugin: detector
    container: vision
    version: "^1.2"
    qos: {detections: state}
  - id: out
    plugin: log_sink
    container: delivery
edges:
  - from: cam.frames
    to: det.image
    qos: {reliability: best_effort, depth: 2}
    transport: inproc
  - from: det.detections
    to: out.in
"""


def codes(text, env=None):
    g, issues = parse_graph(text, env=env or {})
    return [(i.code, i.line) for i in issues]


def test_good_graph_model_and_positions():
    g = load_graph(GOOD, file="lobby.yaml", env={})
    assert (g.name, g.spec_version, g.file) == ("lobby", 1, "lobby.yaml")
    assert [c.id for c in g.containers] == ["vision", "delivery"]
    vision = g.container("vision")
    assert (vision.host, vision.restart, vision.restart_backoff_s, vision.restart_limit) == ("edge1", "never", 2.0, 0)
    assert g.container("delivery").restart == "on-failure"       # the default policy
    cam = g.node("cam")
    assert cam.params == {"uri": "file:///data/lobby.mp4", "fps": 15, "label": "15", "when": "2024-01-02"}
    assert (cam.pos.line, cam.pos.column) == (11, 5)
    assert cam.param_pos["fps"].line == 16
    assert cam.key_pos["plugin"].line == 12
    det = g.node("det")
    assert det.version == "^1.2" and det.qos == {"detections": "state"}
    e = g.edges[0]
    assert (e.src_node, e.src_port, e.dst_node, e.dst_port) == ("cam", "frames", "det", "image")
    assert e.qos == {"reliability": "best_effort", "depth": 2} and e.transport == "inproc"
    assert e.pos.line == 28 and e.key_pos["to"].line == 29 and e.key_pos["qos.depth"].line == 30
    assert g.edges[1].transport == "auto" and g.edges[1].qos is None
    assert g.inputs_of("det") == [e] and g.outputs_of("det") == [g.edges[1]]
    assert g.raw["nodes"][0]["params"]["fps"] == 15


def test_environment_wins_over_default_and_is_typed_in_plain_scalars():
    g = load_graph(GOOD, env={"CAM_URI": "rtsp://cam/1", "FPS": "7.5"})
    assert g.node("cam").params["uri"] == "rtsp://cam/1"
    assert g.node("cam").params["fps"] == 7.5        # plain scalar: typed like YAML
    assert g.node("cam").params["label"] == "7.5"    # quoted: stays a string


def test_interpolation_errors_and_escape():
    text = "schnitzel: 1\nname: x\nnodes:\n  - id: a\n    plugin: p\n    params:\n      u: ${env:NOPE}\n" \
           "      v: ${NOPE}\n      w: pre-$${env:LITERAL}-post\n      z: ${env:SET}/${env:SET}\n"
    g, issues = parse_graph(text, env={"SET": "s"})
    assert [(i.code, i.line) for i in issues] == [("SCH107", 7), ("SCH108", 8)]
    assert "NOPE" in issues[0].message and "${env:NOPE:-" in issues[0].hint
    assert g.node("a").params["w"] == "pre-${env:LITERAL}-post"
    assert g.node("a").params["z"] == "s/s"
    with pytest.raises(GraphLoadError) as ei:
        load_graph(text, env={"SET": "s"})
    assert [i.code for i in ei.value.issues] == ["SCH107", "SCH108"]


def test_default_container_and_single_declared_container():
    g = load_graph("schnitzel: 1\nname: x\nnodes:\n  - {id: a, plugin: p}\n", env={})
    assert [(c.id, c.implicit) for c in g.containers] == [(DEFAULT_CONTAINER, True)]
    assert g.node("a").container == DEFAULT_CONTAINER
    g = load_graph("schnitzel: 1\nname: x\ncontainers: [{id: only}]\nnodes:\n  - {id: a, plugin: p}\n", env={})
    assert g.node("a").container == "only"


@pytest.mark.parametrize("text, expected", [
    ("", [("SCH101", 1)]),
    ("# just a comment\n", [("SCH101", 1)]),
    ("[1, 2]\n", [("SCH101", 1)]),
    ("schnitzel: 1\n", [("SCH102", 1), ("SCH102", 1)]),
    ("schnitzel: 3\nname: x\nnodes: []\n", [("SCH105", 1)]),
    ("schnitzel: true\nname: x\nnodes: []\n", [("SCH104", 1)]),
    ("schnitzel: 1\nname: [x]\nnodes: []\n", [("SCH104", 2)]),
    ("schnitzel: 1\nname: x\nnodes: []\nedge: []\n", [("SCH103", 4)]),
    ("schnitzel: 1\nname: x\nname: y\nnodes: []\n", [("SCH109", 3)]),
    ("schnitzel: 1\nname: x\nnodes:\n  - {id: a}\n", [("SCH102", 4)]),
    ("schnitzel: 1\nname: x\nnodes:\n  - {id: a, plugin: p, colour: red}\n", [("SCH103", 4)]),
    ("schnitzel: 1\nname: x\nnodes:\n  - {id: a, plugin: p, version: 'new'}\n", [("SCH111", 4)]),
    ("schnitzel: 1\nname: x\nnodes: []\nedges:\n  - {from: a, to: b.c}\n", [("SCH110", 5)]),
    ("schnitzel: 1\nname: x\nnodes: []\nedges:\n  - {to: b.c}\n", [("SCH102", 5)]),
    ("schnitzel: 1\nname: x\nnodes: []\nedges:\n  - {from: a.b, to: b.c, transport: tcp}\n", [("SCH106", 5)]),
    ("schnitzel: 1\nname: x\ncontainers:\n  - {id: c, restart_limit: -1}\nnodes: []\n", [("SCH106", 4)]),
    ("schnitzel: 1\nname: x\ncontainers:\n  - {id: c, restart_backoff_s: soon}\nnodes: []\n", [("SCH104", 4)]),
    ("schnitzel: 1\nname: x\nnodes: []\n---\nname: y\n", [("SCH003", 5)]),
    ("schnitzel: 1\nname: !custom x\nnodes: []\n", [("SCH004", 2)]),
    ("schnitzel: 1\nname: x\nnodes:\n  - &a {id: a, plugin: p}\n  - {<<: *a, id: b}\n", [("SCH004", 5), ("SCH102", 5)]),
    ("schnitzel: 1\nname: x\nnodes:\n  - id: a\n    plugin: p\n    params: [1]\n", [("SCH104", 6)]),
    ("schnitzel: 1\nname: ''\nnodes:\n  - {id: '', plugin: p}\n", [("SCH104", 2), ("SCH104", 4)]),
    ("schnitzel: 1\nname: x\nnodes:\n  - {id: a, plugin: p, container: ' '}\n", [("SCH104", 4)]),
])
def test_shape_errors_are_coded_at_their_line(text, expected):
    assert codes(text) == expected


def test_syntax_errors_and_unreadable_files(tmp_path):
    with pytest.raises(GraphLoadError) as ei:
        load_graph("schnitzel: 1\nname: [x\n", file="g.yaml")
    issue = ei.value.issues[0]
    assert issue.code == "SCH002" and issue.file == "g.yaml" and issue.line >= 2 and ei.value.unreadable
    with pytest.raises(GraphLoadError) as ei:
        load_graph(tmp_path / "missing.yaml")
    assert ei.value.issues[0].code == "SCH001" and ei.value.unreadable
    with pytest.raises(GraphLoadError) as ei:
        load_graph(tmp_path)
    assert ei.value.issues[0].code == "SCH001"
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(GraphLoadError) as ei:
        load_graph(binary)
    assert ei.value.issues[0].code == "SCH002"
    tab = tmp_path / "t.yaml"
    tab.write_text("schnitzel: 1\nnodes:\n\t- id: a\n")
    with pytest.raises(GraphLoadError) as ei:
        load_graph(tab)
    assert ei.value.issues[0].code == "SCH002" and ei.value.issues[0].line == 3


def test_deep_nesting_is_an_error_not_a_crash():
    # libyaml's composer recurses in C: without the guard this depth crashes the interpreter.
    for text in ("[" * 200000 + "]" * 200000, "- " * 100000 + "x"):
        g, issues = parse_graph(text)
        assert g is None and [i.code for i in issues] == ["SCH004"]


def test_path_and_text_inputs(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text(GOOD)
    assert load_graph(p, env={}).file == str(p)
    assert load_graph(str(p), env={}).name == "lobby"
    assert load_graph(GOOD.encode(), file="x.yaml", env={}).file == "x.yaml"


def test_alias_bomb_is_bounded():
    import time
    lines = ["schnitzel: 1", "name: x", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines += ["nodes:", "  - id: n", "    plugin: p", "    params: {bomb: *a8}"]
    t0 = time.perf_counter()
    g, issues = parse_graph("\n".join(lines) + "\n", env={})
    assert time.perf_counter() - t0 < 5
    assert "SCH004" in [i.code for i in issues]


def test_plain_aliases_still_work():
    g = load_graph("schnitzel: 1\nname: x\nnodes:\n  - id: a\n    plugin: p\n    params: &p {fps: 5}\n"
                   "  - id: b\n    plugin: p\n    params: *p\n", env={})
    assert g.node("b").params == {"fps": 5}
