"""The invalid-graph corpus: each file states the exact codes and lines it must produce.

Header lines of each fixture:
    # expect: SCH203@12 SCH301@20    errors (code@line), exactly these, in any order
    # warn: SCH610@7                 warnings, exactly these (optional: unchecked when absent)
The plugins come from sch_fixture_plugins, never from what happens to be installed.
"""
import re
from pathlib import Path

import pytest

import sch_fixture_plugins
from schnitzel_validator import CODES, validate_path

HERE = Path(__file__).parent
INVALID = sorted((HERE / "fixtures" / "invalid").glob("*.yaml"))
VALID = sorted((HERE / "fixtures" / "valid").glob("*.yaml"))
REGISTRY = sch_fixture_plugins.registry()
ENV = {"SCHNITZEL_TEST_SET": "1"}   # the corpus never depends on the caller's environment


def expectations(path: Path):
    head = path.read_text(encoding="utf-8", errors="replace").splitlines()[:3]
    errors = warns = None
    for line in head:
        m = re.match(r"#\s*(expect|warn):(.*)$", line)
        if m:
            items = sorted(m.group(2).split("(")[0].split())   # "(...)" after the codes is a comment
            bad = [i for i in items if not re.fullmatch(r"SCH\d{3}@\d+", i)]
            assert not bad, f"{path.name}: malformed expectation {bad}"
            if m.group(1) == "expect":
                errors = items
            else:
                warns = items
    return errors, warns


def test_corpus_is_large_enough():
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID + VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_codes_and_lines(path):
    errors, warns = expectations(path)
    assert errors is not None, f"{path.name}: first lines must hold '# expect: CODE@LINE ...'"
    report = validate_path(path, REGISTRY, env=ENV)
    got_errors = sorted(f"{i.code}@{i.line}" for i in report.errors)
    assert got_errors == errors, report.format_text()
    if warns is not None:
        assert sorted(f"{i.code}@{i.line}" for i in report.warnings) == warns, report.format_text()
    assert report.valid == (not errors)
    for issue in report.issues:
        assert issue.code in CODES
        assert issue.file == str(path)
        assert issue.message and issue.hint, f"{issue.code} needs a message and a hint"
        if issue.code not in ("SCH101",):
            assert issue.line >= 1 and issue.column >= 1


def test_corpus_covers_every_check():
    """Every code a graph file can trigger has at least one fixture (the rest are tested elsewhere)."""
    covered = set()
    for path in INVALID + VALID:
        errors, warns = expectations(path)
        covered |= {item.split("@")[0] for item in (errors or []) + (warns or [])}
    tested_elsewhere = {"SCH000", "SCH001", "SCH302"}   # internal error, unreadable file, broken plugin import
    assert set(CODES) - tested_elsewhere - covered == set()
