"""The test file: YAML next to a graph (``<graph>.test.yaml`` or ``tests/*.yaml``).

Every problem is a :class:`SpecError` naming the file, the line and the fix; nothing here
raises anything else for bad input.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

BASE_STAMP_NS = 1_700_000_000_000_000_000   # stamp 0 of a test file: fixed, so runs are deterministic
DEFAULT_STEP_S = 0.1                         # inline packets without a stamp: 0.0, 0.1, 0.2 ... s
FAULTS = ("kill_container", "stop_backend", "proxy", "drop_source", "skew_clock", "fill_disk", "cut_link")
TOXICS = ("latency", "refuse", "reset")
INVARIANTS = ("no_loss", "duplicates", "status", "resume_within_s")


class SpecError(Exception):
    def __init__(self, file: str, line: int, message: str, fix: str) -> None:
        super().__init__(f"{file}:{line}: {message}\n  fix: {fix}")
        self.file, self.line, self.message, self.fix = file, line, message, fix


class LDict(dict):
    """A mapping that remembers the line of itself and of each key."""
    line = 0
    lines: Dict[str, int] = {}


class LList(list):
    line = 0
    item_lines: List[int] = []


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: _Loader, node: yaml.MappingNode) -> LDict:
    d = LDict()
    d.line = node.start_mark.line + 1
    d.lines = {}
    for k, v in node.value:
        key = loader.construct_object(k, deep=True)
        d[key] = loader.construct_object(v, deep=True)
        d.lines[key] = k.start_mark.line + 1
    return d


def _seq(loader: _Loader, node: yaml.SequenceNode) -> LList:
    out = LList(loader.construct_object(v, deep=True) for v in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [v.start_mark.line + 1 for v in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


@dataclasses.dataclass
class Input:
    at: str                          # node.port
    packets: List[Dict[str, Any]]    # Packet.to_dict form, stamps resolved
    line: int = 0


@dataclasses.dataclass
class Expect:
    at: str                          # node.port, or node (every output port)
    count: Any = None                # int or {min, max}
    packets: Optional[List[Dict[str, Any]]] = None   # in order; each a subset of fields
    all: Optional[Dict[str, Any]] = None             # a condition every packet meets
    order: Optional[str] = None      # a field that never decreases
    within_s: Optional[float] = None  # each output's stamp within T s of its input's stamp
    line: int = 0
    packet_lines: List[int] = dataclasses.field(default_factory=list)  # line of each expected packet


@dataclasses.dataclass
class Case:
    name: str
    inputs: List[Input]
    expect: List[Expect]
    mode: str = "inproc"             # inproc | runtime
    advance_s: float = 0.0           # after the inputs: move the clock on and tick every node once
    line: int = 0


@dataclasses.dataclass
class Fault:
    do: str
    at: float = 0.0
    args: Dict[str, Any] = dataclasses.field(default_factory=dict)
    line: int = 0


@dataclasses.dataclass
class Chaos:
    name: str
    duration_s: float
    faults: List[Fault]
    check: Dict[str, Any]
    backend: bool = False
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    line: int = 0


@dataclasses.dataclass
class TestFile:
    path: Path
    graph: Path
    env: Dict[str, str]
    cases: List[Case]
    chaos: List[Chaos]


_TMP: Dict[int, str] = {}


def resolved_env(tf: "TestFile") -> Dict[str, str]:
    """The file's ``env:`` with ``{tmp}`` replaced by a fresh directory of this run (one per
    test file, removed when the process exits), e.g. for a durable queue's data directory."""
    if not any("{tmp}" in v for v in tf.env.values()):
        return dict(tf.env)
    if id(tf) not in _TMP:
        import atexit
        import shutil
        import tempfile

        d = tempfile.mkdtemp(prefix="schnitzel-test-data-")
        atexit.register(shutil.rmtree, d, True)
        _TMP[id(tf)] = d
    return {k: v.replace("{tmp}", _TMP[id(tf)]) for k, v in tf.env.items()}


class _P:
    def __init__(self, file: str) -> None:
        self.file = file

    def err(self, where: Any, message: str, fix: str) -> SpecError:
        line = where if isinstance(where, int) else getattr(where, "line", 0) or 1
        return SpecError(self.file, line, message, fix)

    def keys(self, d: Any, what: str, allowed: tuple, required: tuple = (), line: int = 0) -> LDict:
        """``d`` must be a mapping of these keys; ``line``: where a scalar ``d`` stands (it has no line)."""
        if not isinstance(d, dict):
            raise self.err(getattr(d, "line", 0) or line or 1, f"{what} must be a mapping, got {type(d).__name__}",
                           f"write {what} as `key: value` lines (see docs/testing-graphs.md)")
        for k in d:
            if k not in allowed:
                raise self.err(d.lines.get(k, d.line) if isinstance(d, LDict) else d,
                               f"unknown key {k!r} in {what}", f"use one of: {', '.join(allowed)}")
        for k in required:
            if k not in d:
                raise self.err(d, f"{what} has no {k!r}", f"add `{k}:` to {what}")
        return d  # type: ignore[return-value]

    def line_of(self, d: Any, key: str) -> int:
        return (d.lines.get(key) if isinstance(d, LDict) else None) or getattr(d, "line", 1) or 1

    def num(self, d: Any, key: str, what: str, default: Any = None, minimum: float = 0.0) -> Any:
        v = d.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
            raise self.err(self.line_of(d, key), f"{what}.{key} must be a number >= {minimum:g}, got {v!r}",
                           f"write e.g. `{key}: 2`")
        return float(v)

    def port(self, d: Any, key: str, what: str, need_port: bool = True) -> str:
        v = d.get(key)
        if not isinstance(v, str) or (need_port and v.count(".") != 1) or not v.strip("."):
            raise self.err(self.line_of(d, key), f"{what}.{key} must name a node{' and port' if need_port else ''}"
                           f" as `node.port`, got {v!r}", f"write e.g. `{key}: policy.in`")
        return v


def _packet(p: _P, d: Any, i: int, default_stream: str, base_dir: Path, line: int = 0) -> Dict[str, Any]:
    """An inline packet (or a fixture line) -> Packet.to_dict form with a deterministic stamp."""
    p.keys(d, "a packet", ("kind", "payload", "payload_text", "stamp", "stamp_ns", "stream_id", "seq", "epoch",
                            "frame_id", "schema", "content_type", "meta", "idempotency_key", "packet_id",
                            "payload_encoding", "payload_ref"), ("kind",), line=line)
    out: Dict[str, Any] = {"stream_id": str(d.get("stream_id", default_stream)), "seq": d.get("seq", i),
                           "epoch": d.get("epoch", 0), "kind": str(d["kind"])}
    for k in ("frame_id", "schema", "idempotency_key", "packet_id", "payload_ref"):
        if k in d:
            out[k] = d[k]
    if "meta" in d:
        if not isinstance(d["meta"], dict):
            raise p.err(p.line_of(d, "meta"), "meta must be a mapping of strings", "write `meta: {key: value}`")
        out["meta"] = {str(k): str(v) for k, v in d["meta"].items()}
    if "stamp_ns" in d:
        out["stamp_ns"] = int(d["stamp_ns"])
    else:
        s = d.get("stamp", i * DEFAULT_STEP_S)
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise p.err(p.line_of(d, "stamp"), f"stamp must be seconds (a number), got {s!r}",
                        "write e.g. `stamp: 1.5` (seconds after the test's fixed time zero)")
        out["stamp_ns"] = BASE_STAMP_NS + int(round(float(s) * 1e9))
    if "payload_text" in d:
        out.update(payload=__import__("base64").b64encode(str(d["payload_text"]).encode()).decode(),
                   payload_encoding="base64", content_type=d.get("content_type", "text/plain"))
    elif d.get("payload_encoding") == "base64":
        out.update(payload=d.get("payload", ""), payload_encoding="base64", content_type=d.get("content_type", ""))
    else:
        out.update(payload=_plain(d.get("payload")), payload_encoding="json",
                   content_type=d.get("content_type", "application/json"))
    return out


def _plain(v: Any) -> Any:
    """LDict/LList -> plain JSON values."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _fixture(p: _P, where: int, name: str, base_dir: Path, default_stream: str) -> List[Dict[str, Any]]:
    path = (base_dir / name)
    if path.suffix == ".mcap":
        return _recording(p, where, name, path)
    if path.suffix == ".db3":
        raise p.err(where, f"fixture {name}: a SQLite bag (.db3) is not read; schnitzel records MCAP",
                    "record with `schnitzel run --record FILE.mcap` (or `ros2 bag record -s mcap`) and name that file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise p.err(where, f"fixture {name} cannot be read: {exc.strerror or exc}",
                    f"create {path} (JSON lines, one packet per line) or fix the path (relative to the test file)")
    fp = _P(str(path))
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise fp.err(n, f"not JSON: {exc}", "write one packet per line as a JSON object")
        if not isinstance(doc, dict):
            raise fp.err(n, "a fixture line must be a JSON object", 'write e.g. {"kind": "event", "payload": {}}')
        d = LDict(doc)
        d.line, d.lines = n, {}
        out.append(_packet(fp, d, len(out), default_stream, base_dir))
    return out


def _recording(p: _P, where: int, name: str, path: Path) -> List[Dict[str, Any]]:
    """Every StreamPacket of an MCAP recording (schnitzel run --record, ros2 bag), in log-time
    order, exactly as recorded: ids, keys and stamps come from the file, so runs repeat."""
    from schnitzel_core.recording import STREAM_PACKET, RecordingError, decode_packet, read_messages

    out: List[Dict[str, Any]] = []
    try:
        for m in read_messages(str(path)):
            if m.msg_type != STREAM_PACKET:
                continue   # Image channels and others: not StreamPackets
            try:
                out.append(decode_packet(m.data).to_dict())
            except ValueError as exc:
                raise p.err(where, f"fixture {name}: a message on {m.topic} is not a StreamPacket ({exc})",
                            "record StreamPacket topics (schnitzel run --record)")
    except RecordingError as exc:
        raise p.err(where, f"fixture {name}: {exc}", f"check the path (relative to the test file): {path}")
    if not out:
        raise p.err(where, f"fixture {name}: the recording holds no StreamPacket",
                    "record a run that carried packets (schnitzel run --record)")
    return out


def parse(path: Path) -> TestFile:
    file = str(path)
    p = _P(file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(file, 1, f"cannot read the test file: {exc}", "check the path and that it is UTF-8 YAML")
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(file, (mark.line + 1) if mark else 1, f"not valid YAML: {exc.problem}",
                        "fix the YAML syntax here (indentation, a missing ':' or quote)") from None
    except yaml.YAMLError as exc:
        raise SpecError(file, 1, f"not valid YAML: {exc}", "fix the YAML syntax") from None
    if doc is None:
        raise SpecError(file, 1, "the test file is empty", "start from the example in docs/testing-graphs.md")
    p.keys(doc, "the test file", ("schnitzel_test", "graph", "env", "cases", "chaos"), ("schnitzel_test", "graph"))
    if doc["schnitzel_test"] != 1:
        raise p.err(p.line_of(doc, "schnitzel_test"), f"schnitzel_test: {doc['schnitzel_test']!r} is not a known version",
                    "write `schnitzel_test: 1`")
    graph = path.parent / str(doc["graph"])
    if not graph.is_file():
        raise p.err(p.line_of(doc, "graph"), f"graph {doc['graph']} does not exist (looked for {graph})",
                    "name the graph file relative to this test file, e.g. `graph: graph.yaml`")
    env = doc.get("env") or {}
    if not isinstance(env, dict):
        raise p.err(p.line_of(doc, "env"), "env must be a mapping", "write `env: {NAME: value}`")
    cl, xl = _list(p, doc, "cases"), _list(p, doc, "chaos")
    cases = [_case(p, c, i, path.parent, _item_line(cl, i)) for i, c in enumerate(cl)]
    chaos = [_chaos(p, c, i, _item_line(xl, i)) for i, c in enumerate(xl)]
    if not cases and not chaos:
        raise p.err(doc, "the test file has no cases and no chaos profiles", "add a `cases:` list")
    names = [c.name for c in cases] + [c.name for c in chaos]
    for c in cases + chaos:  # type: ignore[operator]
        if names.count(c.name) > 1:
            raise p.err(c.line, f"two cases are named {c.name!r}", "give every case its own name")
    return TestFile(path, graph, {str(k): str(v) for k, v in env.items()}, cases, chaos)


def _list(p: _P, d: Any, key: str) -> list:
    v = d.get(key) or []
    if not isinstance(v, list):
        raise p.err(p.line_of(d, key), f"{key} must be a list", f"write each entry under `{key}:` as `- ...`")
    return v


def _item_line(lst: Any, i: int) -> int:
    lines = getattr(lst, "item_lines", [])
    return lines[i] if i < len(lines) else getattr(lst, "line", 0)


def _case(p: _P, c: Any, i: int, base_dir: Path, line: int = 0) -> Case:
    p.keys(c, f"case {i + 1}", ("name", "mode", "inputs", "expect", "advance_s"), ("name", "inputs", "expect"), line=line)
    mode = c.get("mode", "inproc")
    if mode not in ("inproc", "runtime"):
        raise p.err(p.line_of(c, "mode"), f"mode {mode!r} is not known", "use `mode: inproc` or `mode: runtime`")
    inputs = []
    il = _list(p, c, "inputs")
    for j, d in enumerate(il):
        what = f"case {c['name']!r} input {j + 1}"
        p.keys(d, what, ("at", "packets", "fixture", "stream_id"), ("at",), line=_item_line(il, j))
        at = p.port(d, "at", what)
        stream = str(d.get("stream_id", "test"))
        pk: List[Dict[str, Any]] = []
        if "fixture" in d:
            pk += _fixture(p, p.line_of(d, "fixture"), str(d["fixture"]), base_dir, stream)
        plist = _list(p, d, "packets")
        for k, x in enumerate(plist):
            pk.append(_packet(p, x, len(pk), stream, base_dir, line=plist.item_lines[k] if isinstance(plist, LList) else 0))
        if not pk:
            raise p.err(d, f"{what} has no packets", "add `packets:` (inline) or `fixture: FILE.jsonl`")
        inputs.append(Input(at, pk, d.line))
    if not inputs:
        raise p.err(c, f"case {c['name']!r} has no inputs", "add at least one entry under `inputs:`")
    expect = []
    el = _list(p, c, "expect")
    for j, d in enumerate(el):
        what = f"case {c['name']!r} expect {j + 1}"
        p.keys(d, what, ("at", "count", "packets", "all", "order", "within_s"), ("at",), line=_item_line(el, j))
        at = p.port(d, "at", what, need_port=False)
        cnt = d.get("count")
        if cnt is not None and not (isinstance(cnt, int) and not isinstance(cnt, bool) and cnt >= 0) and not (
                isinstance(cnt, dict) and set(cnt) <= {"min", "max"} and cnt):
            raise p.err(p.line_of(d, "count"), f"count must be a number or {{min, max}}, got {cnt!r}",
                        "write `count: 3` or `count: {min: 1, max: 5}`")
        pk = d.get("packets")
        if pk is not None and (not isinstance(pk, list) or not all(isinstance(x, dict) for x in pk)):
            raise p.err(p.line_of(d, "packets"), "expect packets must be a list of mappings",
                        "write `packets: [{kind: event, payload.n: 1}]`")
        al = d.get("all")
        if al is not None and not isinstance(al, dict):
            raise p.err(p.line_of(d, "all"), "all must be a mapping of field: condition",
                        "write `all: {payload.range_m: {min: 0.2, max: 4}}`")
        order = d.get("order")
        if order is not None and not isinstance(order, str):
            raise p.err(p.line_of(d, "order"), "order must name a field", "write `order: payload.n` or `order: stamp`")
        expect.append(Expect(at, _plain(cnt), _plain(pk), _plain(al), order,
                             p.num(d, "within_s", what), d.line, [getattr(x, "line", d.line) for x in pk or []]))
    if not expect:
        raise p.err(c, f"case {c['name']!r} has nothing to expect", "add at least one entry under `expect:`")
    return Case(str(c["name"]), inputs, expect, mode, p.num(c, "advance_s", f"case {c['name']!r}", 0.0) or 0.0, c.line)


def _chaos(p: _P, c: Any, i: int, line: int = 0) -> Chaos:
    p.keys(c, f"chaos profile {i + 1}", ("name", "duration_s", "backend", "env", "faults", "check"),
           ("name", "duration_s", "faults", "check"), line=line)
    what = f"chaos profile {c['name']!r}"
    faults = []
    fl = _list(p, c, "faults")
    for k, d in enumerate(fl):
        if not isinstance(d, dict) or "do" not in d:
            raise p.err(getattr(d, "line", 0) or _item_line(fl, k), f"{what}: a fault needs `do:`", "write e.g. `- {at: 3, do: kill_container, container: delivery}`")
        if d["do"] not in FAULTS:
            raise p.err(p.line_of(d, "do"), f"{what}: unknown fault {d['do']!r}", f"use one of: {', '.join(FAULTS)}")
        if d["do"] == "proxy" and d.get("toxic") not in TOXICS:
            raise p.err(p.line_of(d, "toxic") if "toxic" in d else d.line, f"{what}: proxy needs a toxic",
                        f"add `toxic:` one of {', '.join(TOXICS)}")
        for need, fault in (("container", "kill_container"), ("node", "drop_source"), ("node", "skew_clock"),
                            ("host", "cut_link")):
            if d["do"] == fault and need not in d:
                raise p.err(d, f"{what}: {fault} needs `{need}:`",
                            f"add `{need}: <{'name of a host' if need == 'host' else 'id'} from the graph>`")
        if d["do"] in ("proxy", "stop_backend") and not c.get("backend"):
            raise p.err(d, f"{what}: {d['do']} needs the reference backend", "add `backend: reference` to the profile")
        faults.append(Fault(str(d["do"]), p.num(d, "at", what, 0.0) or 0.0,
                            {k: _plain(v) for k, v in d.items() if k not in ("do", "at")}, d.line))
    if not faults:
        raise p.err(c, f"{what} has no faults", "add `faults:` with at least one `- {at: T, do: F}`")
    check = p.keys(c["check"], f"{what} check", INVARIANTS + ("queue",), line=p.line_of(c, "check"))
    b = c.get("backend")
    if b not in (None, False, "reference"):
        raise p.err(p.line_of(c, "backend"), f"backend {b!r} is not known", "write `backend: reference`")
    return Chaos(str(c["name"]), p.num(c, "duration_s", what) or 1.0, faults, _plain(check), bool(b),
                 {str(k): str(v) for k, v in (c.get("env") or {}).items()}, c.line)


def find_files(targets: List[Path]) -> List[Path]:
    """Test files named on the command line, or found in the named directories:
    ``*.test.yaml`` and ``tests/*.yaml`` (recursively)."""
    out: List[Path] = []
    for t in targets:
        if t.is_dir():
            def seen(x: Path) -> bool:   # not inside hidden directories (.venv, .git, .cache)
                return not any(part.startswith(".") and part not in (".", "..") for part in x.relative_to(t).parts)
            out += sorted(x for x in t.rglob("*.test.yaml") if seen(x))
            out += sorted(x for x in t.rglob("tests/*.yaml") if seen(x) and not x.name.endswith(".test.yaml"))
        else:
            out.append(t)
    return out
