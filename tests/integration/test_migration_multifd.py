"""Live migration with multifd: the memory over two parallel TLS streams
(`[migration] multifd-channels=2` on both nodes), the local disk over NBD as always.
Two real vmletd nodes in network namespaces of their own (peers.py)."""
import subprocess
import time

import pytest

from peers import peer_nodes
from vmrun import uptime


@pytest.fixture(scope="module")
def nodes(test_guest, qemu_available, tmp_path_factory):
    with peer_nodes(test_guest / "guest.iso", tmp_path_factory.mktemp("pki"),
                    migration_conf="multifd-channels=2\n") as pair:
        yield pair


def test_evict_over_multifd(nodes):
    a, b = nodes
    a.guest_disk("multi-root")
    a.write_vm("multi")
    a.wait_phase("multi", "Running", 90)
    con = a.console("multi")
    before = uptime(con.wait_for("VMLET-TICK", 60))
    con.close()
    op = a.migrate("multi")
    # The source's TCP connections to the destination's QEMU ports while it copies: one
    # for NBD, the main stream and the two channels (a single stream would make it 2).
    most = 0
    while (a.op(op) or {}).get("status", {}).get("phase") not in ("Completed", "Failed"):
        ss = a.in_netns("ss", "-tnH", "state", "established", "dst", b.address).stdout
        ports = [int(line.split()[-1].rsplit(":", 1)[1]) for line in ss.splitlines()]
        most = max(most, len([p for p in ports if 49152 <= p <= 49161]))
        time.sleep(0.05)
    assert most == 4, most
    done = a.wait_op(op)
    assert done["status"]["phase"] == "Completed", done
    b.wait_phase("multi", "Running", 30)
    con = b.console("multi")
    after = uptime(con.wait_for("VMLET-TICK", 30))
    assert after >= before
    assert not [line for line in con.lines if line.startswith("VMLET-GUEST-BOOT-OK")]
    con.close()
    stale = f"{a.disk_path('multi-root')}.migrated-to-hv-2"
    r = subprocess.run(["qemu-img", "compare", "-U", stale, str(b.disk_path("multi-root"))],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {j["step"] for j in a.journals().values()} == {"Finished"}
    assert {j["step"] for j in b.journals().values()} == {"Finished"}
