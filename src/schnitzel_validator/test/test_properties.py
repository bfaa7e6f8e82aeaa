"""Property-based: no input crashes the validator; the result is valid or a list of coded errors."""
import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import sch_fixture_plugins as fx
from schnitzel_validator import CODES, validate_text

REG = fx.registry()
VALID = yaml.safe_load((Path(__file__).parent / "fixtures" / "valid" / "lobby.yaml").read_text())
# database=None: no .hypothesis/ directory left in the source tree.
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["ticker", "camera", "router", "t.out", "out.in", "${env:X}", "${env:Y:-1}",
                                     "${bad", "frames", "events", "inproc", "shm", "main", "1", "-1", "^1.0"]))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(
        ["schnitzel", "name", "nodes", "edges", "containers", "id", "plugin", "params", "from", "to", "qos",
         "transport", "container", "version", "host", "restart"])), inner, max_size=5)), max_leaves=25)


def check(report, text=None):
    for issue in report.issues:
        assert issue.code in CODES and issue.code != "SCH000", issue
        assert issue.message and issue.hint
        assert issue.severity in ("error", "warning")
        if text is not None:   # every position points into the file
            assert 1 <= issue.line <= len(text.splitlines()) + 1, issue
            assert issue.column >= 1, issue
    assert report.valid == (not report.errors)
    assert isinstance(report.format_text(), str) and isinstance(report.to_json(), str)


@SETTINGS
@given(documents)
def test_arbitrary_yaml_documents(doc):
    text = yaml.safe_dump(doc)
    check(validate_text(text, file="gen.yaml", registry=REG, env={}), text)


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    check(validate_text(text, file="gen.yaml", registry=REG, env={"X": "1"}), text + "\n")


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    check(validate_text(data, file="gen.yaml", registry=REG, env={}))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _parent(doc, path):
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    return cur


@SETTINGS
@given(st.data())
def test_mutated_valid_graphs(data):
    doc = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        op = data.draw(st.sampled_from(["delete", "replace", "duplicate", "swap_ends"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = data.draw(documents)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        elif op == "swap_ends" and isinstance(parent, dict) and "from" in parent and "to" in parent:
            parent["from"], parent["to"] = parent["to"], parent["from"]
    text = yaml.safe_dump(doc, sort_keys=False)
    check(validate_text(text, file="mut.yaml", registry=REG, env={}), text)


LOBBY_TEXT = (Path(__file__).parent / "fixtures" / "valid" / "lobby.yaml").read_text()


@SETTINGS
@given(st.data())
def test_text_level_edits_of_a_valid_graph(data):
    """Typos as people make them: a deleted line, a stray character, a swapped pair of lines."""
    lines = LOBBY_TEXT.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "insert_char", "swap", "dedent", "duplicate"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "insert_char":
            col = data.draw(st.integers(0, len(lines[i])))
            ch = data.draw(st.sampled_from(list(":-{}[]'\"#&*!|>%@` \t.x1")))
            lines[i] = lines[i][:col] + ch + lines[i][col:]
        elif op == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip()
        elif op == "duplicate":
            lines.insert(i, lines[i])
    text = "\n".join(lines) + "\n"
    check(validate_text(text, file="edit.yaml", registry=REG, env={}), text)


def test_the_unmutated_graph_is_valid():
    report = validate_text(yaml.safe_dump(VALID, sort_keys=False), file="v.yaml", registry=REG, env={})
    assert report.valid and report.warnings == [], report.format_text()
