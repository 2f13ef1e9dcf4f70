"""Maintenance mode across three real vmletd nodes, each in a network namespace of its own
(peers.py), with real QEMU guests: `vmlet drain` moves every running VM to a peer with an
Evict each (the guests never reboot), reports by name the VM no peer can take and ends
non-zero, `--force` stops that one gracefully keeping its spec, a cordoned node refuses a
Start and incoming migrations and is never chosen, `vmlet uncordon` cancels the evictions
not yet at the switchover, and a vmletd killed mid-drain resumes it.

The cases share the nodes and the guests (booting one costs ~6 s under TCG) and run in file
order: each leaves the VMs where the next one expects them."""
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import vmlet_binary
from daemon import API, qemu_pids
from peers import peer_nodes
from vmrun import uptime

# Slow enough that a test can act while an eviction copies memory (~30 MiB: about 2 s),
# fast enough to keep the module near two minutes.
SLOW = "bandwidth=16Mi\n"


def vmlet(node, *args, timeout=240):
    return subprocess.run([str(vmlet_binary()), *args, "--socket", node.socket],
                          capture_output=True, text=True, timeout=timeout)


def node_obj(node):
    status, body = node.request("GET", "/node")
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def cluster(test_guest, qemu_available, tmp_path_factory):
    def pin_first(nodes):
        # Only hv-1 carries pin=yes: a VM selecting it has nowhere else to go.
        nodes[0].conf.write_text(nodes[0].conf.read_text().replace(
            "labels=disktype=ssd", "labels=disktype=ssd;pin=yes"))
    with peer_nodes(test_guest / "guest.iso", tmp_path_factory.mktemp("pki"), count=3,
                    migration_conf=SLOW, before_start=pin_first) as nodes:
        yield nodes


def ticks(node, name, timeout=60):
    con = node.console(name)
    try:
        return uptime(con.wait_for("VMLET-TICK", timeout, start=len(con.lines))), con
    except BaseException:
        con.close()
        raise


def test_drain_moves_vms_reports_the_unplaceable_and_refuses_starts(cluster):
    a, b, c = cluster
    for name in ("mover1", "mover2", "pinned"):
        a.guest_disk(f"{name}-root")
    a.write_vm("mover1")
    a.write_vm("mover2")
    a.write_vm("pinned", nodeSelector={"pin": "yes"})
    a.guest_disk("idle-root")
    a.write_vm("idle", runPolicy="Manual")
    for name in ("mover1", "mover2", "pinned"):
        a.wait_phase(name, "Running", 90)
    a.wait_phase("idle", "Stopped")
    before = {}
    for name in ("mover1", "mover2"):
        before[name], con = ticks(a, name, 90)
        con.close()

    # hv-3 is cordoned first (an empty node: its drain ends at once): nothing may go there.
    r = vmlet(c, "drain")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "node/hv-3 cordoned" in r.stdout and "drained: 0 VMs moved" in r.stdout, r.stdout
    assert node_obj(c)["spec"]["unschedulable"] is True

    # The dry run on hv-1 changes nothing and says what would happen.
    r = vmlet(a, "drain", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "mover1: would be evicted (peers that fit: hv-2, hv-3)" in r.stdout, r.stdout
    assert "pinned: cannot be moved: no peer can take the VM: hv-2: " in r.stdout, r.stdout
    assert "idle: Stopped, stays defined" in r.stdout, r.stdout
    assert "(dry run) 2 VMs to evict, 1 VM no peer can take" in r.stdout, r.stdout
    assert node_obj(a)["spec"]["unschedulable"] is False

    t0 = time.monotonic()
    r = vmlet(a, "drain", "--timeout", "3m")
    took = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "node/hv-1 cordoned" in r.stdout
    assert "default/mover1: moved to hv-2" in r.stdout and \
        "default/mover2: moved to hv-2" in r.stdout, out
    assert "1 VM could not be moved" in r.stderr, out
    assert "default/pinned: TargetUnschedulable: no peer can take the VM" in r.stderr, out
    assert "hv-2: spec.nodeSelector: node has pin=(unset), the VM needs pin=yes; hv-3: " \
        in r.stderr, out
    print(f"drain of 2 VMs took {took:.1f} s")

    # Both guests run on hv-2 (hv-3 is cordoned), the same boots: uptime goes on.
    for name in ("mover1", "mover2"):
        vm = b.wait_phase(name, "Running", 30)
        assert vm["status"]["nodeName"] == "hv-2"
        up, con = ticks(b, name, 30)
        assert up >= before[name]
        assert not [line for line in con.lines if line.startswith("VMLET-GUEST-BOOT-OK")]
        con.close()
        assert c.vm(name) is None
        a.wait_for(lambda n=name: a.vm(n) is None, 30, f"{name} gone from hv-1")
    # Each by an Evict named as DVP names them, kept on the source.
    status, ops = a.request("GET", f"{API}/namespaces/default/virtualmachineoperations")
    evictions = [o for o in ops["items"] if o["metadata"]["name"].startswith("evacuation-")]
    assert {o["spec"]["virtualMachineName"] for o in evictions
            if o["status"]["phase"] == "Completed"} == {"mover1", "mover2"}, evictions
    assert all(o["spec"]["type"] == "Evict" for o in evictions)

    # The pinned VM runs on where it was; the node shows the drain.
    assert a.vm("pinned")["status"]["phase"] == "Running"
    node = node_obj(a)
    assert node["status"]["phase"] == "Ready,SchedulingDisabled"
    drain = node["status"]["drain"]
    assert drain["phase"] == "Failed" and drain["moved"] == 2 and drain["unplaceable"] == 1
    r = vmlet(a, "get", "node")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "RUNNING", "DRAIN"], r.stdout
    assert lines[1].split()[:3] == ["hv-1", "Ready,SchedulingDisabled", "1"], r.stdout
    assert "drain failed: 1 VM could not be moved" in lines[1], r.stdout
    assert any(line.split()[:3] == ["default/mover1", "Moved", "hv-2"] for line in lines), \
        r.stdout
    assert any(line.split()[:2] == ["default/pinned", "Unplaceable"] for line in lines)
    # The persisted cordon says the same.
    saved = json.loads((a.root / "state" / "cordon.json").read_text())
    assert {v["name"]: v["state"] for v in saved["vms"]} == {
        "mover1": "Moved", "mover2": "Moved", "pinned": "Unplaceable"}

    # No VM starts on a cordoned node: a Start is created Failed with NodeCordoned.
    status, op = a.operate("idle", "Start")
    assert status == 201 and op["status"]["phase"] == "Failed", op
    assert op["status"]["reason"].startswith("NodeCordoned: node hv-1 is cordoned"), op
    r = vmlet(a, "start", "idle")
    assert r.returncode == 1 and "NodeCordoned" in r.stderr, r.stderr
    assert a.vm("idle")["status"]["phase"] == "Stopped"
    assert not a.vm("idle")["status"].get("pid")


def test_force_stops_the_unplaceable_gracefully_and_uncordon_starts_it(cluster):
    a, b, c = cluster
    con = a.console("pinned")
    r = vmlet(a, "drain", "--force", "--timeout", "2m")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "default/pinned: Stopped" in r.stdout, r.stdout
    assert "drained: 0 VMs moved, 1 stopped" in r.stdout, r.stdout
    # Gracefully: the guest saw its power button.
    con.wait_for("VMLET-ACPI-POWERDOWN", 30)
    con.close()
    # Its spec is kept; it wants to run, so it waits Pending for the node, saying why.
    vm = a.wait_phase("pinned", "Pending", 30)
    ready = next(x for x in vm["status"]["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "NodeCordoned", ready
    assert (a.etc / "vms.d" / "pinned.json").exists()
    assert not qemu_pids(a.root)

    # vmletd restarted while cordoned: still cordoned, still nothing starts.
    a.kill()
    a.start()
    assert node_obj(a)["spec"]["unschedulable"] is True
    time.sleep(1)
    assert a.vm("pinned")["status"]["phase"] == "Pending"
    assert not qemu_pids(a.root)

    r = vmlet(a, "uncordon")
    assert r.returncode == 0 and "node/hv-1 uncordoned" in r.stdout, r.stdout + r.stderr
    assert not (a.root / "state" / "cordon.json").exists()
    node = node_obj(a)
    assert node["spec"]["unschedulable"] is False and "drain" not in node["status"], node
    a.wait_phase("pinned", "Running", 60)
    # Manual stays Stopped (no one asked it to run); a Start now works.
    assert a.vm("idle")["status"]["phase"] == "Stopped"
    status, op = a.operate("idle", "Start")
    assert status == 201 and op["status"]["phase"] != "Failed", op
    a.wait_phase("idle", "Running", 60)
    a.request("DELETE", f"{API}/namespaces/default/virtualmachines/idle")
    a.request("DELETE", f"{API}/namespaces/default/virtualmachines/pinned")
    a.wait_for(lambda: not qemu_pids(a.root) and not a.vm("idle") and not a.vm("pinned"), 60,
               "idle and pinned deleted")


def test_a_cordoned_peer_refuses_migrations(cluster):
    a, b, c = cluster
    # Named on purpose: chosen by no one, refused at the choice...
    op = b.migrate("mover1", op="Migrate", to="hv-3")
    done = b.wait_op(op)
    assert done["status"]["phase"] == "Failed", done
    assert "hv-3: cordoned (maintenance)" in done["status"]["reason"], done
    # ...and a prepare sent anyway (a source that chose it before the cordon) is refused.
    body = json.dumps({"id": str(uuid.uuid4()), "generation": 1, "source": "hv-2",
                       "vm": {"kind": "VirtualMachine"}})
    r = b.in_netns("curl", "-sS", "--max-time", "5", "-X", "POST",
                   "--cert", str(b.certs / "client-cert.pem"),
                   "--key", str(b.certs / "client-key.pem"),
                   "--cacert", str(c.certs / "ca-cert.pem"),
                   "--resolve", f"hv-3:7443:{c.address}", "-H", "Content-Type: application/json",
                   "-d", body, "https://hv-3:7443/peer/v1/migrations")
    assert "node hv-3 is cordoned (maintenance): it takes no migrations" in r.stdout, \
        r.stdout + r.stderr
    status, peer_node = 0, None
    r = b.in_netns("curl", "-sS", "--max-time", "5",
                   "--cert", str(b.certs / "client-cert.pem"),
                   "--key", str(b.certs / "client-key.pem"),
                   "--cacert", str(c.certs / "ca-cert.pem"),
                   "--resolve", f"hv-3:7443:{c.address}", "https://hv-3:7443/peer/v1/node")
    peer_node = json.loads(r.stdout)
    assert peer_node["cordoned"] is True, peer_node
    b.wait_phase("mover1", "Running", 30)
    assert c.vm("mover1") is None and not qemu_pids(c.root)
    r = vmlet(c, "uncordon")
    assert r.returncode == 0, r.stderr


class NotifyCollector:
    """systemd's notify socket, as far as vmletd uses it: every datagram, in a thread."""

    def __init__(self, path):
        self.path = path
        self.messages = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, OSError):
                continue

    def statuses(self):
        return [m[len("STATUS="):] for m in list(self.messages) if m.startswith("STATUS=")]

    def close(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()


def evicting(node):
    """The drain's VMs being evicted with their operation past the choice (copying)."""
    out = []
    for v in node_obj(node)["status"].get("drain", {}).get("vms", []):
        if v["state"] == "Evicting" and v.get("operation"):
            op = node.op(v["operation"])
            if op and int(op["status"].get("progress", "0%").rstrip("%")) >= 10:
                out.append((v["name"], v["operation"], op["status"].get("targetNode")))
    return out


def test_uncordon_mid_drain_cancels_the_evictions(cluster):
    a, b, c = cluster
    status, _ = b.request("POST", "/node/drain", {})
    assert status == 200
    moving = b.wait_for(lambda: evicting(b), 60, "an eviction copying", interval=0.05)
    r = vmlet(b, "uncordon")
    assert r.returncode == 0, r.stderr
    for name, op, target in moving:
        done = b.wait_op(op)
        assert done["status"]["phase"] == "Failed", done
        assert "cancelled: the node was uncordoned" in done["status"]["reason"], done
        target_node = a if target == "hv-1" else c
        target_node.wait_for(lambda n=name: target_node.vm(n) is None, 30,
                             f"{name} not left on {target}")
    for name in ("mover1", "mover2"):
        assert b.wait_phase(name, "Running", 30)["status"]["nodeName"] == "hv-2"
    time.sleep(2)  # nothing more is begun once uncordoned
    for name in ("mover1", "mover2"):
        assert b.vm(name)["status"]["phase"] == "Running"
        assert a.vm(name) is None and c.vm(name) is None
    assert not qemu_pids(a.root) and not qemu_pids(c.root)
    assert not (b.root / "state" / "cordon.json").exists()
    node = node_obj(b)
    assert node["spec"]["unschedulable"] is False and "drain" not in node["status"]
    for n in (a, c):
        assert {j["step"] for j in n.journals().values()} <= {"Finished", "Aborted"}


def test_a_drain_resumes_after_vmletd_is_killed(cluster):
    a, b, c = cluster
    before = {}
    for name in ("mover1", "mover2"):
        before[name], con = ticks(b, name, 30)
        con.close()
    status, _ = b.request("POST", "/node/drain", {})
    assert status == 200
    b.wait_for(lambda: evicting(b), 60, "an eviction copying", interval=0.05)
    b.kill()
    # The restarted vmletd under a stand-in for systemd's notify socket: STATUS= says how
    # the drain goes.
    notify = NotifyCollector(b.root / "notify.sock")
    b.start(env=dict(os.environ, NOTIFY_SOCKET=str(notify.path)))
    assert node_obj(b)["spec"]["unschedulable"] is True
    b.wait_for(lambda: node_obj(b)["status"]["drain"], 120, "the drain ends",
               until=lambda d: d["phase"] != "Draining")
    b.wait_for(lambda: notify.statuses(), 10, "STATUS= after the drain",
               until=lambda st: st and st[-1] == "drained: 2 VMs moved; 0 VMs")
    statuses = notify.statuses()
    notify.close()
    assert any(re.fullmatch(r"draining: [12] of 2 VMs left; [12] VMs?: .*", st)
               for st in statuses), statuses
    drain = node_obj(b)["status"]["drain"]
    assert drain["phase"] == "Drained" and drain["moved"] == 2, drain
    for name in ("mover1", "mover2"):
        b.wait_for(lambda n=name: b.vm(n) is None, 30, f"{name} gone from hv-2")
        where = [n for n in (a, c) if n.vm(name)]
        assert len(where) == 1, name
        vm = where[0].wait_phase(name, "Running", 30)
        up, con = ticks(where[0], name, 30)
        assert up >= before[name]
        assert not [line for line in con.lines if line.startswith("VMLET-GUEST-BOOT-OK")]
        con.close()
        assert vm["status"]["nodeName"] == where[0].name
    assert not qemu_pids(b.root)
    r = vmlet(b, "uncordon")
    assert r.returncode == 0
    for n in (a, c):
        for name in ("mover1", "mover2"):
            n.request("DELETE", f"{API}/namespaces/default/virtualmachines/{name}")
