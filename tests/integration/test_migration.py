"""Live migration between two real vmletd nodes, each in a network namespace of its own
(peers.py): mTLS and the allow-list on the peer API, a running guest moved with its local
disk copied over NBD, and every failure the journal rules cover — the operation cancelled,
the destination's QEMU killed, either vmletd killed, the link cut, the destination frozen
at the commit, the source killed at it. After each, the VM runs on exactly one node, the
guest never rebooted, and the node that gave up keeps no QEMU, image or journal step.

The failure cases share one VM ("stayer"), booted once: each leaves it running on hv-1,
which is what each asserts. They run in file order."""
import json
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from daemon import API, Watch, qemu_pids
from peers import Network, Node, Pki
from vmrun import uptime
from waiting import wait

# A slow enough stream that a test can act while the memory is being copied (the test
# guest dirties ~30 MiB: about 2 s at 16 MiB/s), fast enough for CI.
SLOW = "bandwidth=16Mi\n"


@pytest.fixture(scope="module")
def nodes(test_guest, qemu_available, tmp_path_factory):
    net = Network()
    pki = Pki(tmp_path_factory.mktemp("pki"))
    a = Node(test_guest / "guest.iso", net, pki, 1)
    b = Node(test_guest / "guest.iso", net, pki, 2)
    for n in (a, b):
        n.conf.write_text(n.conf.read_text() + SLOW)
    a.add_peer(b)
    b.add_peer(a)
    try:
        a.start()
        b.start()
        yield a, b, net, pki
    finally:
        a.stop()
        b.stop()
        net.close()


def running_on(node, name, timeout=90):
    return node.wait_phase(name, "Running", timeout)


def gone_from(node, name, timeout=60):
    node.wait_for(lambda: node.vm(name) is None, timeout, f"{name} gone from {node.name}")


def no_leftovers(node, name, disk):
    """The node that gave a migration up: no VM, no QEMU for it, no image made for it,
    every journal at an outcome."""
    gone_from(node, name)
    node.wait_for(lambda: not qemu_pids(node.root), 30, f"{node.name}: no QEMU left")
    assert not node.disk_path(disk).exists(), f"{node.name} kept the image it made"
    steps = {j["step"] for j in node.journals().values()}
    assert steps <= {"Finished", "Aborted"}, steps


def peer_curl(node, target, certs, path="/peer/v1/node"):
    """curl from node's namespace to target's peer API with the client certificate in
    certs (None: none); returns (exit code, HTTP status or None)."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "--cacert", str(target.certs / "ca-cert.pem"),
            "--resolve", f"{target.name}:7443:{target.address}",
            f"https://{target.name}:7443{path}"]
    if certs:
        argv[1:1] = ["--cert", str(certs / "client-cert.pem"),
                     "--key", str(certs / "client-key.pem")]
    r = node.in_netns(*argv)
    return r.returncode, int(r.stdout) if r.stdout.strip().isdigit() else None


def test_peer_api_requires_a_known_peers_certificate(nodes, tmp_path):
    a, b, _, pki = nodes
    # A configured peer with a certificate from the CA: answered.
    assert peer_curl(a, b, a.certs) == (0, 200)
    # No client certificate: the handshake fails, nothing is answered.
    rc, status = peer_curl(a, b, None)
    assert rc != 0 and status in (None, 0)
    # A certificate from another CA: refused in the handshake.
    rogue = Pki(tmp_path / "rogue-ca")
    rogue_certs = rogue.node_dir(tmp_path / "rogue", "hv-1", a.address)
    rc, status = peer_curl(a, b, rogue_certs)
    assert rc != 0 and status in (None, 0)
    # The right CA, but a name no peers.d entry gives: authenticated, not authorised, and
    # turned away in the handshake too; the log says why.
    stranger = pki.node_dir(tmp_path / "stranger", "hv-9", a.address)
    time.sleep(1.1)  # refusals are logged once a second at most
    rc, status = peer_curl(a, b, stranger)
    assert rc != 0 and status in (None, 0)
    b.wait_for(lambda: "CN=hv-9" in b.log.read_text(), 5, "the refusal logged",
               until=lambda ok: ok)
    assert "names no peer in peers.d" in b.log.read_text()


def watch_rows(watch, name):
    """(event type, phase, node) of each watch event about the VM name."""
    return [(e["type"], e["object"].get("status", {}).get("phase"),
             e["object"].get("status", {}).get("nodeName"))
            for e in list(watch.events) if e["object"]["metadata"]["name"] == name]


def test_evict_moves_the_running_guest_and_back(nodes):
    a, b, _, _ = nodes
    a.guest_disk("mover-root")
    a.write_vm("mover")
    vm = running_on(a, "mover")
    assert vm["status"]["nodeName"] == "hv-1"
    con = a.console("mover")
    before = uptime(con.wait_for("VMLET-TICK", 60))
    con.close()

    watch = Watch(a)
    op = a.migrate("mover")
    done = a.wait_op(op)
    assert done["status"]["phase"] == "Completed", done
    # The guide's `get -w` on the source: Running hv-1, Migrating hv-1, ..., and its last
    # row names the new node before the VM leaves this node's list.
    rows = wait(lambda: watch_rows(watch, "mover"), 10, "the source's watch ends",
                until=lambda r: r and r[-1][0] == "DELETED")
    watch.close()
    changes = [(phase, node) for kind, phase, node in rows if kind != "DELETED"]
    changes = [c for i, c in enumerate(changes) if i == 0 or c != changes[i - 1]]
    assert changes[0] == ("Running", "hv-1") and ("Migrating", "hv-1") in changes, changes
    assert changes[-1] == ("Running", "hv-2"), changes
    assert done["status"]["progress"] == "100%" and done["status"]["targetNode"] == "hv-2"
    # The guest's pause, measured by the source, and QEMU's own downtime beside it.
    mig = done["status"]["migration"]
    assert 0 < mig["pausedMs"] < 10000 and mig["qemuDowntimeMs"] > 0, mig
    moved = running_on(b, "mover")
    assert moved["status"]["nodeName"] == "hv-2"
    assert moved["status"]["migrationState"]["result"] == "Succeeded"
    assert moved["status"]["migrationState"]["source"]["node"] == "hv-1"
    # The same guest, not a new boot: its uptime goes on, no second boot marker.
    con = b.console("mover")
    after = uptime(con.wait_for("VMLET-TICK", 30))
    assert after >= before
    assert not [line for line in con.lines if line.startswith("VMLET-GUEST-BOOT-OK")]
    con.close()
    # The source forgot it: no VM, no QEMU; its drop-in put aside, not deleted.
    gone_from(a, "mover")
    assert not (a.etc / "vms.d" / "mover.json").exists()
    assert (a.etc / "vms.d" / "mover.json.migrated-to-hv-2").exists()
    # The destination owns it: drop-ins for the VM and the disk it had no object for.
    assert json.loads((b.etc / "vms.d" / "mover.json").read_text())["kind"] == "VirtualMachine"
    assert json.loads((b.etc / "disks.d" / "mover-root.json").read_text())["kind"] == \
        "VirtualDisk"
    # The copy left on hv-1 is stale from the commit on: set aside, never deleted, with
    # its drop-in, so a way back copies the disk afresh.
    stale = pathlib.Path(f"{a.disk_path('mover-root')}.migrated-to-hv-2")
    assert stale.exists() and not a.disk_path("mover-root").exists()
    assert (a.etc / "disks.d" / "mover-root.json.migrated-to-hv-2").exists()
    # The local disk came over NBD bit for bit (the guest does not write it).
    r = subprocess.run(["qemu-img", "compare", "-U", str(stale),
                        str(b.disk_path("mover-root"))], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {j["step"] for j in a.journals().values()} == {"Finished"}

    # And back, by Migrate to a named node.
    op = b.migrate("mover", op="Migrate", to="hv-1")
    done = b.wait_op(op)
    assert done["status"]["phase"] == "Completed", done
    running_on(a, "mover")
    gone_from(b, "mover")
    a.request("DELETE", f"{API}/namespaces/default/virtualmachines/mover")


def test_shared_disk_and_image_copies_are_not_copied(nodes):
    """A disk on storage both nodes mount at the same path is the VM's disk on both: no
    NBD copy, nothing set aside. A read-only image present on both (the same file) is
    used as it is. Either way the guest goes on."""
    a, b, _, _ = nodes
    # Both nodes' "shared storage": one directory QEMU's user can reach, at one path.
    shared = pathlib.Path(tempfile.mkdtemp(prefix="vmlet-shared-", dir="/tmp"))
    shared.chmod(0o711)
    disk = shared / "sharer-root.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(a.guest_iso), str(disk)],
                   check=True)
    for n in (a, b):
        (n.etc / "images.d" / "tools.json").write_text(json.dumps({
            "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualImage",
            "metadata": {"name": "tools"}, "spec": {"local": {"format": "iso"}}}))
        image = n.root / "state" / "images" / "default" / "tools.iso"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(a.guest_iso.read_bytes())
    # The disk's object only on hv-1: hv-2 learns it (and its path) from the migration.
    (a.etc / "disks.d" / "sharer-root.json").write_text(json.dumps({
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
        "metadata": {"name": "sharer-root"}, "spec": {"local": {"path": str(disk)}}}))
    a.write_vm("sharer", blockDeviceRefs=[{"kind": "VirtualDisk", "name": "sharer-root"},
                                          {"kind": "VirtualImage", "name": "tools"}])
    running_on(a, "sharer")
    con = a.console("sharer")
    before = uptime(con.wait_for("VMLET-TICK", 60))
    con.close()
    op = a.migrate("sharer")
    assert a.wait_op(op)["status"]["phase"] == "Completed"
    running_on(b, "sharer")
    con = b.console("sharer")
    assert uptime(con.wait_for("VMLET-TICK", 30)) >= before
    con.close()
    # Nothing was copied, so nothing was made on hv-2 or set aside on hv-1.
    assert disk.exists() and not list(shared.glob("*.migrated-to-*"))
    assert not list(shared.glob(".vmlet-shared-*")), "the marker stays behind"
    journal = next(j for j in b.journals().values() if j["name"] == "sharer")
    assert journal["step"] == "Finished" and not journal.get("created"), journal
    assert json.loads((b.etc / "disks.d" / "sharer-root.json").read_text())["spec"]["local"][
        "path"] == str(disk)
    b.request("DELETE", f"{API}/namespaces/default/virtualmachines/sharer")
    gone_from(b, "sharer")
    shutil.rmtree(shared)


def test_a_disk_the_guest_is_writing_arrives_whole(nodes):
    """Local-disk migration while the guest writes to the disk: the guest's dd goes on
    across the switchover and completes on hv-2, and every byte it wrote is in hv-2's
    image (the mirror completed with the vCPUs stopped, so nothing written before the
    switchover is lost and nothing after it goes to the stale copy)."""
    a, b, _, _ = nodes
    a.guest_disk("writer-root")
    data = a.disk_path("writer-data")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(data), "160M"], check=True)
    (a.etc / "disks.d" / "writer-data.json").write_text(json.dumps({
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
        "metadata": {"name": "writer-data"}}))
    # 128 MiB of 0x5a, written by the guest with dd at TCG speed: several seconds.
    a.write_vm("writer", blockDeviceRefs=[{"kind": "VirtualDisk", "name": "writer-root"},
                                          {"kind": "VirtualDisk", "name": "writer-data"}],
               provisioning={"type": "UserData",
                             "userData": "#cloud-config\n#vmlet: write-pattern vdb 5a 131072\n"})
    running_on(a, "writer")
    con = a.console("writer")
    con.wait_for("VMLET-TICK", 60)
    early = [line for line in con.lines if line.startswith("VMLET-WRITE-")]
    con.close()
    assert not early, f"the guest finished writing before the migration began: {early}"
    op = a.migrate("writer")
    done = a.wait_op(op)
    assert done["status"]["phase"] == "Completed", done
    running_on(b, "writer")
    con = b.console("writer")
    assert con.wait_for("VMLET-WRITE-", 120).startswith("VMLET-WRITE-OK vdb")
    con.close()
    b.request("DELETE", f"{API}/namespaces/default/virtualmachines/writer")
    gone_from(b, "writer")
    r = subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x5a 0 128M",
                        str(b.disk_path("writer-data"))], capture_output=True, text=True)
    assert r.returncode == 0 and "Pattern verification failed" not in r.stdout, \
        r.stdout + r.stderr


@pytest.fixture(scope="module")
def stayer(nodes):
    """The VM the failure cases try to move: running on hv-1, its QEMU's pid and the
    guest's uptime as last seen."""
    a, _, _, _ = nodes
    a.guest_disk("stayer-root")
    a.write_vm("stayer")
    vm = running_on(a, "stayer")
    con = a.console("stayer")
    state = {"pid": vm["status"]["pid"], "uptime": uptime(con.wait_for("VMLET-TICK", 60))}
    con.close()
    return state


def still_here(a, b, stayer, timeout=90):
    """The VM runs on hv-1 in the same QEMU, the guest's uptime went on; hv-2 has nothing
    left of it."""
    def resumed(v):
        conds = {c["type"]: c["status"] for c in v["status"]["conditions"]} if v else {}
        return v and v["status"]["phase"] == "Running" and conds.get("Paused") != "True"
    vm = a.wait_for(lambda: a.vm("stayer"), timeout, "stayer Running again on hv-1",
                    until=resumed)
    assert vm["status"]["pid"] == stayer["pid"], "a new QEMU: the guest was restarted"
    con = a.console("stayer")
    now = uptime(con.wait_for("VMLET-TICK", 30))
    assert now >= stayer["uptime"]
    assert not [line for line in con.lines if line.startswith("VMLET-GUEST-BOOT-OK")]
    con.close()
    stayer["uptime"] = now
    no_leftovers(b, "stayer", "stayer-root")


def test_no_matching_peer_leaves_the_vm_running(nodes, stayer):
    a, b, _, _ = nodes
    op = a.migrate("stayer", op="Migrate", to="hv-9")
    done = a.wait_op(op)
    assert done["status"]["phase"] == "Failed"
    assert "hv-9" in done["status"]["reason"], done
    still_here(a, b, stayer)


def test_deleting_the_operation_cancels_the_migration(nodes, stayer):
    a, b, _, _ = nodes
    op = a.migrate("stayer")
    a.wait_progress(op, 10)
    status, _ = a.request("DELETE", f"{API}/namespaces/default/virtualmachineoperations/{op}")
    assert status == 200
    still_here(a, b, stayer)


def test_destination_qemu_killed(nodes, stayer):
    a, b, _, _ = nodes
    op = a.migrate("stayer")
    a.wait_progress(op, 10)
    incoming = b.wait_for(lambda: b.vm("stayer"), 10, "the incoming VM on hv-2",
                          until=lambda v: v and v["status"].get("pid"))
    subprocess.run(["kill", "-9", str(incoming["status"]["pid"])], check=True)
    done = a.wait_op(op)
    assert done["status"]["phase"] == "Failed", done
    still_here(a, b, stayer)


def test_source_vmletd_killed_mid_copy(nodes, stayer):
    a, b, _, _ = nodes
    op = a.migrate("stayer")
    a.wait_progress(op, 10)
    a.kill()
    a.start()
    # Its journal says no commit was sent: the restarted source resumes its QEMU, and the
    # destination learns "Aborted" when it asks (or is told).
    still_here(a, b, stayer, timeout=120)
    assert "Aborted" in {j["step"] for j in a.journals().values()}


def test_destination_vmletd_killed_mid_copy(nodes, stayer):
    a, b, _, _ = nodes
    op = a.migrate("stayer")
    a.wait_progress(op, 10)
    b.kill()
    # The source misses the destination's heartbeat and gives up: the VM runs on.
    done = a.wait_op(op, timeout=120)
    assert done["status"]["phase"] == "Failed", done
    # The restarted destination ends the orphaned incoming QEMU and its image.
    b.start()
    still_here(a, b, stayer)


def test_link_cut_mid_copy(nodes, stayer):
    a, b, net, _ = nodes
    op = a.migrate("stayer")
    a.wait_progress(op, 12)  # bytes are flowing
    net.cut(b.netns, b.dev)
    try:
        done = a.wait_op(op, timeout=120)
        assert done["status"]["phase"] == "Failed", done
        # The heartbeat's loss, or QEMU's own stream or NBD error, whichever comes first.
        assert done["status"]["reason"], done
        # Cut off, the destination never resumes unasked: its QEMU waits, paused.
        incoming = b.vm("stayer")
        assert incoming is None or incoming["status"]["phase"] == "Migrating"
    finally:
        net.mend(b.netns, b.dev)
    # Back in touch, it asks the source, hears "Aborted" and cleans up.
    still_here(a, b, stayer, timeout=120)


def test_destination_frozen_at_the_commit(nodes, stayer):
    """QEMU finishes the copy while the destination's vmletd is frozen: the source reaches
    Committing and must not resume on a timeout (the destination might run the guest). It
    also survives its own restart there. The destination, restarted, never had the commit:
    it aborts, and only its definite "Aborted" lets the source resume."""
    a, b, _, _ = nodes
    op = a.migrate("stayer")
    a.wait_progress(op, 10)
    b.proc.send_signal(signal.SIGSTOP)
    try:
        a.wait_for(lambda: a.journals(), 60, "the source at Committing",
                   until=lambda js: any(j["step"] == "Committing" for j in js.values()))
        time.sleep(3)  # commits time out and are retried; nothing may resume meanwhile
        vm = a.vm("stayer")
        assert vm["status"]["phase"] == "Migrating", vm["status"]
        # The source's own restart at Committing keeps waiting, paused.
        a.kill()
        a.start()
        time.sleep(3)
        assert a.vm("stayer")["status"]["phase"] != "Running"
    finally:
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(timeout=30)
    b.start()
    still_here(a, b, stayer, timeout=120)


def test_source_killed_at_the_commit(nodes, stayer):
    """The source dies as it commits: whether the commit reached the destination or not,
    the VM ends running on exactly one node — the destination, once the restarted source
    commits again or the destination hears "Committing"."""
    a, b, _, _ = nodes
    op = a.migrate("stayer")
    a.wait_progress(op, 10)

    def committing():
        return any(j["step"] in ("Committing", "Committed") for j in a.journals().values())
    wait(committing, 60, "the source at Committing", interval=0.005)
    a.kill()
    a.start()
    moved = running_on(b, "stayer", timeout=120)
    assert moved["status"]["nodeName"] == "hv-2"
    gone_from(a, "stayer")
    a.wait_for(lambda: not qemu_pids(a.root), 30, "hv-1 without a QEMU")
    con = b.console("stayer")
    assert uptime(con.wait_for("VMLET-TICK", 30)) >= stayer["uptime"]
    con.close()
