"""docs/validation.md lists exactly the codes the validator defines, with the same severity."""
import re
from pathlib import Path

from schnitzel_validator.codes import CODES

DOC = Path(__file__).resolve().parents[3] / "docs" / "validation.md"


def doc_rows():
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(SCH\d{3})\s*\|\s*(error|warning)\s*\|", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} documented twice"
            rows[m.group(1)] = m.group(2)
    return rows


def test_doc_codes_equal_code_table():
    rows = doc_rows()
    assert sorted(rows) == sorted(CODES), (
        f"missing from docs: {sorted(set(CODES) - set(rows))}; not in code: {sorted(set(rows) - set(CODES))}")


def test_doc_severities_match():
    rows = doc_rows()
    assert {c: s for c, s in rows.items()} == {c: sev for c, (sev, _t) in CODES.items()}


def test_every_code_the_sources_emit_is_defined():
    """Scan the loader and checks for code literals: none may be missing from the table (and docs)."""
    root = Path(__file__).resolve().parents[2]
    sources = [root / "schnitzel_core" / "schnitzel_core" / "graph_loader.py",
               *sorted((root / "schnitzel_validator" / "schnitzel_validator").glob("checks*.py")),
               root / "schnitzel_validator" / "schnitzel_validator" / "cli.py",
               root / "schnitzel_validator" / "schnitzel_validator" / "__init__.py"]
    emitted = set()
    for src in sources:
        emitted |= set(re.findall(r"SCH\d{3}", src.read_text(encoding="utf-8")))
    assert emitted - set(CODES) == set()
    # and every defined code is emitted somewhere (no dead documentation)
    assert set(CODES) - emitted == set()


def test_graph_spec_documents_every_key_with_an_example():
    """docs/graph-spec.md shows every key the loader accepts in a YAML example."""
    from schnitzel_core import graph_loader as gl
    from schnitzel_core.qos import KEYS, PRESETS

    spec = (DOC.parent / "graph-spec.md").read_text(encoding="utf-8")
    examples = "\n".join(block.split("```", 1)[0] for block in spec.split("```yaml\n")[1:])
    for key in set(gl.TOP_KEYS) | set(gl.CONTAINER_KEYS) | set(gl.NODE_KEYS) | set(gl.EDGE_KEYS) | set(KEYS):
        assert re.search(rf"(^|[\s{{,-]){re.escape(key)}:", examples, re.M), f"no example of {key!r}"
    for value in list(gl.TRANSPORTS) + list(gl.RESTART_POLICIES) + list(PRESETS):
        assert value in spec, value
