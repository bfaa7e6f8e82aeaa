"""Every graph shipped in examples/ validates against the installed plugins (no errors).

The examples are what a newcomer runs first: an invalid one is a bug in the release.
"""
from pathlib import Path

import pytest

from schnitzel_core.registry import load_registry
from schnitzel_validator import validate_path, validate_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("**/*.yaml")
                  if "fixtures" not in p.parts and not p.name.endswith(".test.yaml")  # test files: docs/testing-graphs.md
                  ) if (ROOT / "examples").is_dir() else []


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_is_valid(path, registry):
    report = validate_path(path, registry, env={})   # defaults must carry an example: no env needed
    assert report.valid, report.format_text()


def test_graph_spec_example_is_valid(registry):
    """The first example in docs/graph-spec.md uses built-in plugins and must stay valid."""
    doc = (ROOT / "docs" / "graph-spec.md").read_text(encoding="utf-8")
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    report = validate_text(block, file="docs/graph-spec.md", registry=registry, env={})
    assert report.valid, report.format_text()
