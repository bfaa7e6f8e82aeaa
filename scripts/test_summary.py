"""Sum the JUnit XML results under a build folder into one closing line.

Prints ``N passed, N failed, N skipped`` and exits 1 when anything failed or no
test ran at all (a suite that ran nothing must not look green).
"""
import pathlib
import sys
import xml.etree.ElementTree as ET


def main(base: str) -> int:
    total = failed = skipped = 0
    for xml in sorted(pathlib.Path(base).glob("**/*.xml")):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            continue
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        for s in suites:
            total += int(s.get("tests", 0))
            failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
            skipped += int(s.get("skipped", 0))
    passed = total - failed - skipped
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if total == 0:
        print("no test ran", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build"))
