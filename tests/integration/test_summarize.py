"""tests/summarize.py, the line CI ends with: TAP cases counted one by one, skips as skips."""
import json
import subprocess
import sys

from conftest import SOURCE


def summarize(tmp_path, *tests):
    log = tmp_path / "testlog.json"
    log.write_text("".join(json.dumps(t) + "\n" for t in tests))
    r = subprocess.run([sys.executable, str(SOURCE / "tests" / "summarize.py"), f"unit:{log}"],
                       capture_output=True, text=True)
    return r.returncode, r.stdout.splitlines()[-1]


def test_tap_skip_counts_as_skipped(tmp_path):
    rc, line = summarize(tmp_path, {
        "name": "t", "result": "OK",
        "stdout": "1..4\nok 1 /a\nok 2 /b # SKIP no /dev/kvm\nok 3 /c # skip\nok 4 /skipper\n"})
    assert (rc, line) == (0, "2 passed, 0 failed, 2 skipped")


def test_failures_and_whole_test_skips(tmp_path):
    rc, line = summarize(tmp_path,
                         {"name": "t", "result": "FAIL", "stdout": "1..2\nok 1 /a\nnot ok 2 /b\n"},
                         {"name": "u", "result": "SKIP", "stdout": ""},
                         {"name": "v", "result": "OK", "stdout": "plain output\n"})
    assert (rc, line) == (1, "2 passed, 1 failed, 1 skipped")
