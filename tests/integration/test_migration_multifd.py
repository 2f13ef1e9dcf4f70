"""Live migration with multifd: the memory over two parallel TLS streams
(`[migration] multifd-channels=2` on both nodes), the local disk over NBD as always.
Two real vmletd nodes in network namespaces of their own (peers.py)."""
import subprocess
import time

import pytest

from peers import Network, Node, Pki


def uptime(tick):
    return float(tick.split("uptime=")[1])


@pytest.fixture(scope="module")
def nodes(test_guest, qemu_available, tmp_path_factory):
    net = Network()
    pki = Pki(tmp_path_factory.mktemp("pki"))
    conf = "multifd-channels=2\n"
    a = Node(test_guest / "guest.iso", net, pki, 1, migration_conf=conf)
    b = Node(test_guest / "guest.iso", net, pki, 2, migration_conf=conf)
    a.add_peer(b)
    b.add_peer(a)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()
        net.close()


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
