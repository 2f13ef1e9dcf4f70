"""Counts test results from meson's testlog.json files and pytest's JUnit XML.

A meson test using the TAP protocol counts once per TAP case ("ok N" / "not ok N"), so a
golden suite of 56 cases counts 56, and a case marked "# SKIP" counts as skipped, not
passed; other meson tests count once. Prints the totals and
exits non-zero when anything failed or a result file is missing.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

TAP = re.compile(r"^(not ok|ok)\b(.*)$")
# TAP's directive: "ok 3 /x # SKIP reason" (GLib's g_test_skip), case-insensitive.
TAP_SKIP = re.compile(r"#\s*skip\b", re.I)
TAP_PLAN = re.compile(r"^1\.\.\d+$", re.M)


def meson_counts(path):
    passed = failed = skipped = 0
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            result = t["result"]
            out = t.get("stdout", "")
            cases = [TAP.match(l).groups() for l in out.splitlines() if TAP.match(l)]
            if TAP_PLAN.search(out) and cases:
                skip = sum(1 for c, rest in cases if c == "ok" and TAP_SKIP.search(rest))
                ok = sum(1 for c, _ in cases if c == "ok") - skip
                bad = len(cases) - ok - skip
                if result not in ("OK", "EXPECTEDFAIL", "SKIP") and bad == 0:
                    bad = 1  # crashed after its last reported case
                passed += ok
                failed += bad
                skipped += skip
            elif result == "OK":
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
    return passed, failed, skipped


def junit_counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = failed = skipped = 0
    for s in suites:
        total += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def main(args):
    passed = failed = skipped = 0
    for arg in args:
        label, path = arg.split(":", 1)
        if label == "sanitizer-reports":
            # Any report file is one failure: a sanitizer found a bug the tests did not.
            import os
            n = len(os.listdir(path))
            print(f"{label}: {n} report file(s) in {path}")
            failed += n
            continue
        try:
            p, f, s = junit_counts(path) if path.endswith(".xml") else meson_counts(path)
        except (OSError, ValueError, ET.ParseError) as e:
            print(f"{label}: no results ({e})")
            p, f, s = 0, 1, 0
        print(f"{label}: {p} passed, {f} failed, {s} skipped")
        passed, failed, skipped = passed + p, failed + f, skipped + s
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
