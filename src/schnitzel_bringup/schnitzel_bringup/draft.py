"""Drafting a graph with a language model, the validator in the loop (``schnitzel draft``).

    cfg = LLMConfig.resolve(base_url=None, model=None)      # flags, else SCHNITZEL_LLM_* env
    result = draft_graph("count people at the dock ...", ChatClient(cfg), load_registry(),
                         rounds=3, log=print)
    if result.ok: result.graph_text, result.tests_text, result.summary

Pure logic, no ROS: the prompt (plugin catalogue from the registry, the graph
spec in brief, the answer format), parsing the model's answer, checking the drafted graph
(the validator) and its drafted test file, and the repair loop that sends every
problem (code, line, message, hint) back to the model for up to N rounds. The model
server's configuration and the OpenAI-compatible chat client (where the API key is
handled and masked) are in ``llm_client``.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from schnitzel_core.graph import Graph
from schnitzel_core.registry import Registry

from .llm_client import ChatClient, DraftError, _snippet

TEST_FORMAT_VERSION = 1
#: Longest plugin/param description carried in the prompt (the catalogue must stay compact).
_DESC_MAX = 100


# ---------------------------------------------------------------- the prompt
GRAPH_SPEC_BRIEF = """\
A schnitzel graph (spec version 1) is a YAML document:
  schnitzel: 1                       # required
  name: NAME                         # required: letters, digits, _ (not starting with a digit); the ROS namespace
  description: TEXT                  # optional
  containers:                        # optional; default: one container "main"
    - {id: ID, host: localhost, restart: on-failure}   # restart: never | on-failure
  nodes:                             # required
    - id: ID                         # unique; letters, digits, _; not starting with _ or a digit
      plugin: PLUGIN                 # one of the installed plugins below, nothing else
      container: ID                  # optional (a declared container)
      params: {...}                  # checked against the plugin's parameter JSON Schema
  edges:
    - {from: NODE.OUTPORT, to: NODE.INPORT}   # optional keys: qos (frames|sensor|events|state), transport (auto|inproc|shm|dds)
Rules the validator enforces (among others): every plugin must be installed; params must match
their schema (required ones given, no unknown keys); an edge goes from an output port to an input
port whose packet kinds match ("*" and "video.*" wildcards); a plugin marked external (it writes
outside the graph) must be fed through a durable_queue node (only control nodes may sit between
the queue and the sink); inproc-only payloads stay inside one container; cycles need a delay node.
Secrets are never written in a graph: a parameter that names an environment variable holds the
variable's NAME; other values may use ${env:VAR:-default}.
"""

TEST_FORMAT_BRIEF = """\
The test file ("tests") is a `schnitzel test` file (docs/testing-graphs.md), format schnitzel_test 1:
  schnitzel_test: 1
  cases:
    - name: TEXT
      inputs:                               # packets inserted at a node's INPUT port
        - at: NODE.INPORT
          packets: [{kind: KIND, payload: ANY, meta: {...}, stamp: SECONDS}]   # kind required
      expect:                               # what comes out of a node's OUTPUT port
        - at: NODE.OUTPORT
          count: N                          # optional: exactly N packets, or {min: A, max: B}
          packets: [{kind: KIND, payload.FIELD: VALUE}]   # optional: the first packets, in order, with the fields each must have
          all: {kind: KIND}                 # optional: fields every packet must have
Write 1 to 3 short cases that check what the request asks for. Conventional payloads: detections
{"boxes": [{"x1", "y1", "x2", "y2", "score", "label", "track_id"}], "width", "height"} (pixels);
event: JSON (event_type, severity, ...); video.frame payloads cannot be written inline.
"""


def _cut(text: str, limit: int = _DESC_MAX) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compact_schema(schema: Dict[str, Any]) -> Dict[str, Any]:
    props = {}
    for name, s in schema.get("properties", {}).items():
        s = dict(s)
        if "description" in s:
            s["description"] = _cut(s["description"], 80)
        s.pop("x-live", None)
        props[name] = s
    out: Dict[str, Any] = {"properties": props}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


def catalogue(registry: Registry) -> str:
    """The installed plugins, one block each: category, ports with kinds, parameter JSON Schema."""
    lines = []
    for entry in registry.entries():
        spec = entry.spec
        if spec is None or not entry.ok:
            continue
        flags = [f for f, on in (("external", spec.external), ("durable_queue", spec.durable_queue),
                                 ("delay", spec.delay)) if on]
        head = f"- {spec.name} ({spec.category.value}{', ' + ', '.join(flags) if flags else ''})"
        if spec.description:
            head += f": {_cut(spec.description)}"
        lines.append(head)
        ins = ", ".join(f"{p.name}[{'|'.join(p.kinds)}]" + (f"({p.profile.value})" if p.profile.value != "any" else "")
                        for p in spec.inputs)
        outs = ", ".join(f"{p.name}[{'|'.join(p.kinds)}]" + (f"({p.profile.value})" if p.profile.value != "any" else "")
                         for p in spec.outputs)
        lines.append(f"  in: {ins or '-'}; out: {outs or '-'}")
        if spec.params:
            lines.append("  params: " + json.dumps(_compact_schema(spec.params_json_schema()),
                                                   separators=(",", ":"), default=str))
    return "\n".join(lines)


def answer_schema(registry: Registry, synthesize: bool = False) -> Dict[str, Any]:
    """JSON Schema of the answer, for servers that constrain output (response_format json_schema)."""
    plugins = [e.name for e in registry.entries() if e.ok and e.spec is not None]
    node = {"type": "object", "required": ["id", "plugin"],
            "properties": {"id": {"type": "string"}, "plugin": {"type": "string", "enum": plugins},
                           "container": {"type": "string"}, "params": {"type": "object"},
                           "description": {"type": "string"}}}
    edge = {"type": "object", "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"},
                           "qos": {"type": "string"}, "transport": {"type": "string"}}}
    graph = {"type": "object", "required": ["schnitzel", "name", "nodes"],
             "properties": {"schnitzel": {"type": "integer", "enum": [1]}, "name": {"type": "string"},
                            "description": {"type": "string"},
                            "containers": {"type": "array", "items": {"type": "object"}},
                            "nodes": {"type": "array", "items": node},
                            "edges": {"type": "array", "items": edge}}}
    out: Dict[str, Any] = {"type": "object", "required": ["graph", "summary", "tests"],
                           "properties": {"graph": graph, "summary": {"type": "string"},
                                          "tests": {"type": "object"}}}
    if synthesize:
        from .synth import answer_schema_part

        node["properties"]["plugin"] = {"type": "string"}     # a synthesized plugin has a new name
        out["properties"]["plugins"] = answer_schema_part()
    return out


SYSTEM_PROMPT = """\
You write stream-processing graphs for schnitzel, a ROS 2 stream platform. You answer with ONE JSON
object and nothing else: {"graph": GRAPH, "summary": TEXT, "tests": TESTS} where GRAPH is the graph
document as a JSON object (keys as in the YAML below), TEXT says in two to four plain sentences what
the graph does, and TESTS is the test file described below. Use only the installed plugins and
their exact port and parameter names.

""" + GRAPH_SPEC_BRIEF + "\n" + TEST_FORMAT_BRIEF + "\nInstalled plugins (name (category): description; ports with packet kinds; parameter JSON Schema):\n"


def build_messages(request: str, registry: Registry, current: Optional[str] = None,
                   current_name: str = "", synthesize: bool = False) -> List[Dict[str, str]]:
    """The first round's messages. ``current``: the running graph's text when changing it."""
    system = SYSTEM_PROMPT + catalogue(registry)
    if synthesize:
        from .synth import SYNTH_BRIEF

        system += "\n\n" + SYNTH_BRIEF
    if current is None:
        user = f"Draft a graph for this request:\n{request.strip()}"
    else:
        user = (f"This graph is running now (file text):\n```yaml\n{current.rstrip()}\n```\n"
                f"Write the complete new version of it for this change:\n{request.strip()}\n"
                f"Keep its name {current_name!r}, keep the ids of the nodes that stay, change only what the "
                "change needs. The tests describe the new version.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def repair_message(problems: Sequence["Problem"], graph_text: Optional[str]) -> Dict[str, str]:
    """The next round's user message: every problem of the last answer, with the graph's lines."""
    parts = ["Your last answer has these problems; answer again with the whole corrected JSON object."]
    if graph_text:
        numbered = "\n".join(f"{i:>3}: {line}" for i, line in enumerate(graph_text.splitlines(), 1))
        parts.append(f"The graph as YAML (line numbers as the problems use them):\n{numbered}")
    parts.append("Problems:")
    parts.extend(p.line_text() for p in problems)
    return {"role": "user", "content": "\n".join(parts)}


# ---------------------------------------------------------------- the answer
@dataclasses.dataclass
class Problem:
    """One thing wrong with an answer: a validator issue, a test-file error or an unusable answer."""

    code: str            # SCHxxx validator; DRAFT1xx answer; DRAFT2xx test file; DRAFT3xx change; DRAFT4xx plugins
    message: str
    line: int = 0        # line in the graph YAML (0: not about one line)
    hint: str = ""
    where: str = "graph"  # graph | tests | answer | plugins

    def line_text(self) -> str:
        at = f"{self.where} line {self.line}" if self.line else self.where
        return f"- {self.code} ({at}): {self.message}" + (f" [hint: {self.hint}]" if self.hint else "")

    def to_dict(self) -> Dict[str, Any]:
        return {"code": self.code, "where": self.where, "line": self.line, "message": self.message,
                "hint": self.hint}


class AnswerError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)\n```", re.S)


def _json_object(content: str) -> Dict[str, Any]:
    text = content.strip()
    candidates = [text] + [m.group(1) for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for c in candidates:
        try:
            obj = json.loads(c)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise AnswerError(Problem("DRAFT101", "the answer is not a JSON object "
                              f"(it starts with {_snippet(content, 60)!r})",
                              hint='answer with exactly {"graph": {...}, "summary": "...", "tests": {...}}',
                              where="answer"))


_SCALARS = (str, int, float, bool, type(None))


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists; short leaf collections in flow style, as people write graphs."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def _leaf(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, _SCALARS) or (isinstance(v, list) and all(isinstance(x, _SCALARS) for x in v))
                   for v in value)
    return isinstance(value, dict) and all(isinstance(v, _SCALARS) for v in value.values())


def _short_enough(value: Any) -> bool:
    return len(json.dumps(value, default=str)) <= 80


_Dumper.add_representer(list, lambda d, v: d.represent_sequence(
    "tag:yaml.org,2002:seq", v, flow_style=_leaf(v) and _short_enough(v)))
_Dumper.add_representer(dict, lambda d, v: d.represent_mapping(   # a node ("plugin" key) stays a block
    "tag:yaml.org,2002:map", v.items(), flow_style=bool(v) and "plugin" not in v and _leaf(v) and _short_enough(v)))


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def graph_yaml(graph: Any, header: str = "") -> str:
    """The drafted graph as the YAML text that is validated and written (header comment first)."""
    body = graph.strip() + "\n" if isinstance(graph, str) else dump_yaml(graph)
    return header + body


def comment_header(request: str, model: str) -> str:
    text = " ".join(request.split())
    lines = [text[i:i + 90] for i in range(0, len(text), 90)] or [""]
    out = [f"# Drafted by `schnitzel draft` ({model}); review it before running it. Request:"]
    out.extend(f"#   {line}" for line in lines)
    return "\n".join(out) + "\n"


@dataclasses.dataclass
class Answer:
    graph_text: str
    summary: str
    tests: Any
    plugins: Any = None      # synthesized plugins ([{name, module, test}]), with --synthesize


def parse_answer(content: str, header: str = "") -> Answer:
    """The model's answer as graph YAML text, summary and tests; AnswerError when unusable."""
    obj = _json_object(content)
    g = obj.get("graph")
    if isinstance(g, str):
        # some models put the YAML text in a string; take it as it is
        try:
            parsed = yaml.safe_load(g)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, dict):
            raise AnswerError(Problem("DRAFT102", '"graph" is a string that is not a YAML mapping',
                                      hint='"graph" must be the graph document as a JSON object', where="answer"))
    elif not isinstance(g, dict):
        raise AnswerError(Problem("DRAFT102", 'the answer has no "graph" object',
                                  hint='answer with {"graph": {...}, "summary": "...", "tests": {...}}',
                                  where="answer"))
    summary = obj.get("summary")
    summary = summary.strip() if isinstance(summary, str) else ""
    return Answer(graph_yaml(g, header), summary, obj.get("tests"), obj.get("plugins"))


# ---------------------------------------------------------------- the test file
def _endpoint(at: Any, graph: Graph, registry: Registry, want: str) -> Optional[str]:
    """Why ``at`` is not an existing ``node.port`` of direction ``want`` (None when it is)."""
    if not isinstance(at, str) or "." not in at:
        return f"'at' must be NODE.PORT, not {at!r}"
    nid, port = at.rsplit(".", 1)
    node = graph.node(nid)
    if node is None:
        return f"'at: {at}': the graph has no node {nid!r} (nodes: {', '.join(sorted(n.id for n in graph.nodes))})"
    entry = registry.get(node.plugin)
    spec = entry.spec if entry is not None else None
    if spec is None:
        return None          # the validator reports the plugin
    ports = spec.inputs if want == "in" else spec.outputs
    names = [p.name for p in ports]
    if port not in names:
        kind = "input" if want == "in" else "output"
        return (f"'at: {at}': {node.plugin} node {nid!r} has no {kind} port {port!r} "
                f"({kind} ports: {', '.join(names) or 'none'})")
    return None


def check_tests(tests: Any, graph: Graph, registry: Registry) -> List[Problem]:
    """Problems of a drafted test file (format schnitzel_test 1, docs/drafting.md)."""
    def p(msg: str, hint: str = "") -> Problem:
        return Problem("DRAFT201", msg, hint=hint, where="tests")

    if not isinstance(tests, dict):
        return [p('"tests" must be a mapping with schnitzel_test: 1 and cases', 'e.g. {"schnitzel_test": 1, "cases": [...]}')]
    out: List[Problem] = []
    if tests.get("schnitzel_test") != TEST_FORMAT_VERSION:
        out.append(p(f"schnitzel_test must be {TEST_FORMAT_VERSION}"))
    unknown = sorted(set(tests) - {"schnitzel_test", "graph", "cases"})
    if unknown:
        out.append(p(f"unknown keys {unknown} (allowed: schnitzel_test, graph, cases)"))
    cases = tests.get("cases")
    if not isinstance(cases, list) or not cases:
        out.append(p("cases must be a non-empty list"))
        return out
    for i, case in enumerate(cases, 1):
        if not isinstance(case, dict):
            out.append(p(f"case {i} is not a mapping"))
            continue
        name = case.get("name")
        label = f"case {i} ({name})" if isinstance(name, str) and name else f"case {i}"
        if not isinstance(name, str) or not name:
            out.append(p(f"{label}: name is missing"))
        bad = sorted(set(case) - {"name", "inputs", "expect"})
        if bad:
            out.append(p(f"{label}: unknown keys {bad} (allowed: name, inputs, expect)"))
        inputs, expect = case.get("inputs"), case.get("expect")
        if not isinstance(inputs, list) or not inputs:
            out.append(p(f"{label}: inputs must be a non-empty list"))
            inputs = []
        if not isinstance(expect, list) or not expect:
            out.append(p(f"{label}: expect must be a non-empty list"))
            expect = []
        for inp in inputs:
            if not isinstance(inp, dict):
                out.append(p(f"{label}: each input is a mapping with at and packets"))
                continue
            why = _endpoint(inp.get("at"), graph, registry, "in")
            if why:
                out.append(p(f"{label}: input {why}", "inputs go into a node's input port"))
            pk = inp.get("packets")
            if not isinstance(pk, list) or not pk:
                out.append(p(f"{label}: input at {inp.get('at')}: packets must be a non-empty list"))
                continue
            for j, pkt in enumerate(pk, 1):
                if not isinstance(pkt, dict) or not isinstance(pkt.get("kind"), str) or not pkt.get("kind"):
                    out.append(p(f"{label}: input at {inp.get('at')}: packet {j} needs a kind"))
                elif sorted(set(pkt) - {"kind", "payload", "meta", "stamp", "stream_id"}):
                    out.append(p(f"{label}: input at {inp.get('at')}: packet {j} has unknown keys "
                                 f"{sorted(set(pkt) - {'kind', 'payload', 'meta', 'stamp', 'stream_id'})}"))
        for exp in expect:
            if not isinstance(exp, dict):
                out.append(p(f"{label}: each expectation is a mapping with at and a condition"))
                continue
            why = _endpoint(exp.get("at"), graph, registry, "out")
            if why:
                out.append(p(f"{label}: expect {why}", "expectations read a node's output port"))
            conds = {"count", "packets", "all"}
            bad = sorted(set(exp) - conds - {"at"})
            if bad:
                out.append(p(f"{label}: expect at {exp.get('at')}: unknown keys {bad} (allowed: at, {', '.join(sorted(conds))})"))
            if not set(exp) & conds:
                out.append(p(f"{label}: expect at {exp.get('at')} has no condition (count, packets or all)"))
            cnt = exp.get("count")
            if "count" in exp and not (isinstance(cnt, int) and not isinstance(cnt, bool) and cnt >= 0) and not (
                    isinstance(cnt, dict) and cnt and set(cnt) <= {"min", "max"}):
                out.append(p(f"{label}: expect at {exp.get('at')}: count must be an integer >= 0 or {{min, max}}"))
            if "packets" in exp and (not isinstance(exp["packets"], list) or
                                     not all(isinstance(c, dict) for c in exp["packets"])):
                out.append(p(f"{label}: expect at {exp.get('at')}: packets must be a list of field mappings"))
            if "all" in exp and not isinstance(exp["all"], dict):
                out.append(p(f"{label}: expect at {exp.get('at')}: all must be a mapping of field: value"))
    return out


def tests_yaml(tests: Dict[str, Any], graph_file: str) -> str:
    doc = {"schnitzel_test": TEST_FORMAT_VERSION, "graph": graph_file}
    doc.update({k: v for k, v in tests.items() if k not in ("schnitzel_test", "graph")})
    head = ("# Graph tests drafted by `schnitzel draft` (run them: `schnitzel test`, docs/testing-graphs.md);\n"
            "# review them: they say what the graph should do, in the model's words.\n")
    return head + dump_yaml(doc)


# ---------------------------------------------------------------- a plain summary
def describe_graph(graph: Graph, registry: Registry) -> List[str]:
    """What the graph does, from its own nodes and edges (not the model's words)."""
    def what(nid: str) -> str:
        n = graph.node(nid)
        if n is None:
            return nid
        entry = registry.get(n.plugin)
        desc = entry.spec.description if entry is not None and entry.spec is not None else ""
        return f"{nid} ({n.plugin}{': ' + _cut(desc, 70) if desc else ''})"

    has_in = {e.dst_node for e in graph.edges}
    has_out = {e.src_node for e in graph.edges}
    sources = [n.id for n in graph.nodes if n.id not in has_in]
    sinks = [n.id for n in graph.nodes if n.id not in has_out]
    lines = [f"graph {graph.name}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, "
             f"{len({n.container for n in graph.nodes})} container(s)"]
    if sources:
        lines.append("takes data from " + "; ".join(what(s) for s in sources))
    for n in graph.nodes:
        outs = sorted({e.dst_node for e in graph.outputs_of(n.id)})
        if outs:
            lines.append(f"{n.id} ({n.plugin}) -> {', '.join(outs)}")
    if sinks:
        lines.append("delivers to " + "; ".join(what(s) for s in sinks))
    return lines


# ---------------------------------------------------------------- the loop
@dataclasses.dataclass
class Round:
    number: int
    prompt_chars: int
    seconds: float
    problems: List[Problem]
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    constrained: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {"round": self.number, "prompt_chars": self.prompt_chars, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "schema_constrained": self.constrained, "valid": not self.problems,
                "errors": [p.to_dict() for p in self.problems]}

    def line(self) -> str:
        toks = f", {self.prompt_tokens} tokens" if self.prompt_tokens is not None else ""
        head = (f"round {self.number}: prompt {self.prompt_chars} chars{toks}, answer in {self.seconds:.1f} s, ")
        if not self.problems:
            return head + "valid"
        codes = ", ".join(f"{p.code}" + (f"@{p.line}" if p.line else "") for p in self.problems[:8])
        more = f" (+{len(self.problems) - 8})" if len(self.problems) > 8 else ""
        return head + f"{len(self.problems)} problem(s): {codes}{more}"


@dataclasses.dataclass
class DraftResult:
    ok: bool
    rounds: List[Round]
    graph_text: Optional[str] = None       # last answer's graph (valid when ok)
    graph: Optional[Graph] = None
    summary: str = ""                      # the model's words
    tests: Optional[Dict[str, Any]] = None
    problems: List[Problem] = dataclasses.field(default_factory=list)  # last round's, when not ok
    warnings: List[str] = dataclasses.field(default_factory=list)      # validator warnings of the result
    diff: Any = None                       # GraphDiff against the running graph (--from)
    plan: List[Any] = dataclasses.field(default_factory=list)
    staged: List[Any] = dataclasses.field(default_factory=list)   # synthesized plugins (synth.Staged), tested
    registry: Optional[Registry] = None    # what the graph was checked against (installed + synthesized)


def check_answer(answer: Answer, registry: Registry, file: str,
                 current: Optional[Graph] = None) -> Tuple[List[Problem], Any, List[str], Any, List[Any]]:
    """(problems, graph, warnings, diff, plan) of one parsed answer."""
    from schnitzel_validator import validate_text

    report = validate_text(answer.graph_text, file=file, registry=registry)
    problems = [Problem(i.code, i.message, i.line, i.hint) for i in report.errors]
    warnings = [str(i) for i in report.warnings]
    graph = report.graph
    diff, plan = None, []
    if graph is not None:
        problems += check_tests(answer.tests, graph, registry)
    if not problems and current is not None and graph is not None:
        from schnitzel_core.graph_diff import GraphDiffError, diff_graphs, plan_application

        try:
            diff = diff_graphs(current, graph, registry)
            plan = plan_application(diff, registry)
        except GraphDiffError as exc:
            problems.append(Problem("DRAFT301", str(exc), hint="keep the graph's name and container hosts"))
        else:
            if not diff.changes:
                problems.append(Problem("DRAFT302", "the new version is the same graph: nothing changes",
                                        hint="make the change the request asks for"))
    return problems, graph, warnings, diff, plan


def draft_graph(request: str, client: ChatClient, registry: Registry, rounds: int = 3,
                current_text: Optional[str] = None, current: Optional[Graph] = None,
                file: str = "<draft>", log: Optional[Callable[[Round], None]] = None,
                clock: Callable[[], float] = time.monotonic, synth: Any = None) -> DraftResult:
    """Ask, check, send the problems back; at most ``1 + rounds`` requests.

    Raises :class:`DraftError` when the server fails (unreachable, timeout, not a chat
    completion); a model that never produces a valid graph is a result with ``ok=False``."""
    if not request or not request.strip():
        raise DraftError("the request is empty: say what the graph should do", 2)
    if rounds < 0:
        raise DraftError("--rounds must be >= 0", 2)
    base = build_messages(request, registry, current_text, current.name if current is not None else "",
                          synthesize=synth is not None)
    messages = base
    schema = answer_schema(registry, synthesize=synth is not None)
    header = comment_header(request, client.config.model)
    done: List[Round] = []
    last_text: Optional[str] = None
    problems: List[Problem] = []
    for n in range(1, rounds + 2):
        prompt_chars = sum(len(m["content"]) for m in messages)
        t0 = clock()
        comp = client.complete(messages, schema)
        took = clock() - t0
        graph, staged, reg = None, [], registry
        try:
            answer = parse_answer(comp.content, header)
        except AnswerError as exc:
            problems, answer = [exc.problem], None
        else:
            last_text = answer.graph_text
            plugin_problems: List[Problem] = []
            if synth is not None:
                # model-written plugins: staged, spec read and test run in subprocesses
                staged, sp = synth.check(answer.plugins, registry)
                plugin_problems = [Problem(p.code, p.message, hint=p.hint, where="plugins") for p in sp]
                reg = synth.registry_with(registry, staged)
            problems, graph, warnings, diff, plan = check_answer(answer, reg, file, current)
            problems = plugin_problems + problems
        rnd = Round(n, prompt_chars, took, problems, comp.prompt_tokens, comp.completion_tokens, comp.constrained)
        done.append(rnd)
        if log is not None:
            log(rnd)
        if not problems and answer is not None:
            return DraftResult(True, done, answer.graph_text, graph, answer.summary, answer.tests,
                               warnings=warnings, diff=diff, plan=plan, staged=staged, registry=reg)
        # only the last answer and its problems go back: the prompt stays bounded however many rounds
        messages = base + [{"role": "assistant", "content": comp.content},
                           repair_message(problems, answer.graph_text if answer is not None else None)]
    return DraftResult(False, done, last_text, None, problems=problems)
