"""JUnit XML (the subset CI servers read: testsuites/testsuite/testcase/failure|error|skipped)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import List

from .result import Result


def write(results: List[Result], path: str) -> None:
    root = ET.Element("testsuites", name="schnitzel test")
    by_file: dict = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, rs in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(rs)),
                              failures=str(sum(r.status == "fail" for r in rs)),
                              errors=str(sum(r.status == "error" for r in rs)),
                              skipped=str(sum(r.status == "skip" for r in rs)),
                              time=f"{sum(r.seconds for r in rs):.3f}")
        for r in rs:
            tc = ET.SubElement(suite, "testcase", classname=file, name=r.name, time=f"{r.seconds:.3f}")
            if r.status in ("fail", "error"):
                el = ET.SubElement(tc, "failure" if r.status == "fail" else "error",
                                   message=(r.details[0] if r.details else r.status)[:200])
                el.text = "\n".join(r.details)
            elif r.status == "skip":
                ET.SubElement(tc, "skipped", message="; ".join(r.details)[:200])
            if r.notes:
                ET.SubElement(tc, "system-out").text = "\n".join(r.notes)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
