"""tests/demo-migration.sh's scenario, checked: the guide's live migration with two real
vmletd nodes in network namespaces (tests/demo_migration.py does the work and prints what a
user sees; this asserts it)."""
import sys

from conftest import SOURCE


def test_demo_migration(test_guest, qemu_available, capsys):
    sys.path.insert(0, str(SOURCE / "tests"))
    import demo_migration
    seen = demo_migration.main(test_guest)
    # The guide's `get -w` rows on the source, repeats folded: Running hv-1, Migrating hv-1,
    # Running hv-2, and no row without a node.
    rows = [r.split() for r in seen["rows"] if r.startswith("linux-vm")]
    changes = [(r[1], r[2]) for r in rows]
    changes = [c for i, c in enumerate(changes) if i == 0 or c != changes[i - 1]]
    assert changes == [("Running", "hv-1"), ("Migrating", "hv-1"), ("Running", "hv-2")], \
        seen["rows"]
    assert seen["hv-1"] == "", seen["hv-1"]  # "No resources found" goes to stderr
    assert [line.split()[:3] for line in seen["hv-2"].splitlines()[1:]] == \
        [["linux-vm", "Running", "hv-2"]]
    before, after = seen["uptimes"]
    assert after >= before and not seen["rebooted"]
    out = capsys.readouterr().out
    assert "done: both nodes stopped and removed, namespaces deleted" in out
