#!/usr/bin/python3
"""Live migration time: `Evict` through two vmletd nodes versus the same migration driven
by hand over QMP, on the same guest, network and certificates, in one run.

Two nodes in network namespaces of their own (tests/integration/peers.py), the test guest
(256 MiB, one vCPU, a local qcow2 disk copied over NBD), TLS on both streams, the same
max-bandwidth. Two ways, taking turns so drift on a noisy host hits both alike:

  raw    a QMP client of our own, with two QEMUs it started from `vmlet render`'s argv,
         does what vmletd does: TLS credentials and authz, capabilities (events,
         pause-before-switchover), parameters, NBD server and export on the destination,
         blockdev-add of the NBD target + blockdev-mirror to READY, migrate, at
         pre-switchover block-job-cancel (the copy complete) + migrate-continue, and on the
         destination nbd-server-stop + cont and the credentials dropped. Timed from the
         first command to the last reply.
  vmlet  POST of an Evict operation on the source's API -> the operation Completed (the
         destination runs the VM, the source has forgotten it). vmletd's own cost on top:
         choosing the target, the prepare call (disks placed, images made, incoming QEMU
         started and confined, its QMP), the journal's fsyncs, commit and hand-over.

Each sample also says how long the guest was paused, at most, measured alike both ways:
from the source's pre-switchover event (QEMU has stopped the vCPUs) to the destination
running again (raw: its `cont` answered; vmlet: the commit answered, which the
destination sends after its `cont`), beside QEMU's own `downtime`, which ends when the last
page left and so misses the disk copies' completion and the commit.

Each way's VM goes back and forth, one sample per direction. Medians, never timed
assertions.
With --multifd N (default 2), both ways again with N multifd TLS streams for the memory
(vmlet: a second pair of nodes with `multifd-channels=N`), to see whether they beat one
stream here. Writes build/bench-migration.json.
"""
import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

SOURCE = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from conftest import build_test_guest, vmlet_binary  # noqa: E402
from peers import Network, Node, Pki  # noqa: E402
from qmp import QMP  # noqa: E402
from waiting import wait  # noqa: E402

BANDWIDTH = 1 << 30  # vmlet's default max-bandwidth, 1 GiB/s, on both sides


def wait_event(q, match, timeout, what):
    """Reads QMP events (never commands) until one satisfies match."""
    q.sock.settimeout(timeout)

    def seen():
        for e in q.events:
            if match(e):
                return e
        line = q.file.readline()
        if line:
            msg = json.loads(line)
            if "event" in msg:
                q.events.append(msg)
    return wait(seen, timeout, what, interval=0)


class RawNode:
    """One QEMU of the raw runs, in a node's namespace, from `vmlet render`'s argv."""

    def __init__(self, node, vm_file, name, work, incoming):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        argv = subprocess.run([str(vmlet_binary()), "render", "-c", str(node.conf),
                               str(vm_file)], check=True, capture_output=True,
                              text=True).stdout.splitlines()
        run_dir = str(node.root / "run" / "vms" / f"default.{name}")
        argv = [a.replace(run_dir, str(work)) for a in argv]
        if incoming:
            argv += ["-incoming", "defer"]
        self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{node.netns}", *argv],
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(work / "qemu.log", "wb"),
                                     stderr=subprocess.STDOUT)
        self.qmp = QMP(str(work / "qmp.sock"))

    def close(self):
        try:
            self.qmp.cmd("quit")
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.qmp.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Sample:
    """One migration: seconds in all; the guest's pause (ms), from the source's vCPUs
    stopping (the pre-switchover event seen) to the destination resumed (cont answered, for
    vmlet its commit answered), at most; QEMU's own `downtime` (ms)."""

    def __init__(self, total_s, paused_ms, qemu_downtime_ms):
        self.total_s, self.paused_ms, self.qemu_downtime_ms = total_s, paused_ms, \
            qemu_downtime_ms


def raw_migrate(src_node, dst_node, src, dst, port, nbd_port, disk, multifd_channels):
    s, d = src.qmp, dst.qmp
    s.events.clear()
    d.events.clear()
    t0 = time.perf_counter()
    d.cmd("object-add", **{"qom-type": "tls-creds-x509", "id": "tls0",
                           "dir": str(dst_node.certs), "endpoint": "server",
                           "verify-peer": True})
    d.cmd("object-add", **{"qom-type": "authz-list", "id": "authz0", "policy": "deny",
                           "rules": [{"match": f"O=vmlet,CN={src_node.name}",
                                      "policy": "allow", "format": "exact"}]})
    caps = [{"capability": "events", "state": True},
            {"capability": "pause-before-switchover", "state": True}]
    multifd = {}
    if multifd_channels:
        caps.append({"capability": "multifd", "state": True})
        multifd = {"multifd-channels": multifd_channels}
    d.cmd("migrate-set-capabilities", capabilities=caps)
    d.cmd("migrate-set-parameters", **{"tls-creds": "tls0", "tls-authz": "authz0"}, **multifd)
    d.cmd("nbd-server-start", addr={"type": "inet", "data": {"host": dst_node.address,
                                                             "port": str(nbd_port)}},
          **{"tls-creds": "tls0", "tls-authz": "authz0"})
    fmt = f"vd-{disk}-fmt"
    d.cmd("block-export-add", **{"type": "nbd", "id": fmt, "node-name": fmt, "name": fmt,
                                 "writable": True})
    d.cmd("migrate-incoming", uri=f"tcp:{dst_node.address}:{port}")
    s.cmd("object-add", **{"qom-type": "tls-creds-x509", "id": "tls0",
                           "dir": str(src_node.certs), "endpoint": "client"})
    s.cmd("migrate-set-capabilities", capabilities=caps)
    s.cmd("migrate-set-parameters", **{"tls-creds": "tls0", "tls-hostname": dst_node.name,
                                       "max-bandwidth": BANDWIDTH, "downtime-limit": 300},
          **multifd)
    s.cmd("blockdev-add", driver="nbd", **{"node-name": "mig-target"},
          server={"type": "inet", "host": dst_node.address, "port": str(nbd_port)},
          export=fmt, **{"tls-creds": "tls0", "tls-hostname": dst_node.name})
    s.cmd("blockdev-mirror", **{"job-id": "mirror0", "device": fmt,
                                "target": "mig-target", "sync": "full"})
    wait_event(s, lambda e: e["event"] == "BLOCK_JOB_READY", 120, "mirror ready")
    s.cmd("migrate", uri=f"tcp:{dst_node.address}:{port}")
    wait_event(s, lambda e: e["event"] == "MIGRATION"
               and e["data"]["status"] == "pre-switchover", 120, "pre-switchover")
    paused = time.perf_counter()
    s.cmd("block-job-cancel", device="mirror0")
    wait_event(s, lambda e: e["event"] in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"), 60,
               "mirror completed")
    s.cmd("migrate-continue", state="pre-switchover")
    wait_event(s, lambda e: e["event"] == "MIGRATION" and e["data"]["status"] == "completed",
               120, "completed")
    d.cmd("nbd-server-stop")
    d.cmd("cont")
    paused = time.perf_counter() - paused
    # Once in a few runs query-migrate, asked right after the COMPLETED event, has no
    # downtime yet. Asked here, after the guest runs again, the wait is not in its pause.
    for _ in range(100):
        info = s.cmd("query-migrate")
        if "downtime" in info:
            break
        time.sleep(0.01)
    else:
        raise RuntimeError(f"query-migrate after COMPLETED has no downtime: {info}")
    qemu_downtime = info["downtime"]
    d.cmd("object-del", id="authz0")  # as vmletd tidies: the next move adds its own
    d.cmd("object-del", id="tls0")
    return Sample(time.perf_counter() - t0, paused * 1000, qemu_downtime)


class RawWay:
    """The raw samples' VM: booted once on a, moved to the other node by each sample;
    multifd: that many parallel TLS streams for its memory (0: one stream)."""

    def __init__(self, a, b, work, name, ports, multifd=0):
        self.nodes, self.work, self.n = (a, b), work / name, 0
        self.name, self.disk, self.ports, self.multifd = name, f"{name}-root", ports, multifd
        a.guest_disk(self.disk)
        # b needs the disk's object for render too (its image comes with each sample).
        shutil.copy(a.etc / "disks.d" / f"{self.disk}.json",
                    b.etc / "disks.d" / f"{self.disk}.json")
        self.size = json.loads(subprocess.run(
            ["qemu-img", "info", "--output=json", str(a.disk_path(self.disk))], check=True,
            capture_output=True, text=True).stdout)["virtual-size"]
        # Outside vms.d, so that no vmletd starts it: only `vmlet render` reads it.
        self.work.mkdir(parents=True, exist_ok=True)
        self.vm_file = self.work / f"{name}.json"
        spec = json.loads(a.write_vm(name).read_text())
        (a.etc / "vms.d" / f"{name}.json").unlink()
        self.vm_file.write_text(json.dumps(spec))
        self.qemu = RawNode(a, self.vm_file, name, self.work / "q0", incoming=False)
        self.qemu.qmp.cmd("cont")

    def sample(self):
        s_node, d_node = self.nodes[self.n % 2], self.nodes[(self.n + 1) % 2]
        target = d_node.disk_path(self.disk)
        target.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(target), str(self.size)],
                       check=True)
        self.n += 1
        dst = RawNode(d_node, self.vm_file, self.name, self.work / f"q{self.n}", incoming=True)
        took = raw_migrate(s_node, d_node, self.qemu, dst, *self.ports, self.disk, self.multifd)
        self.qemu.close()
        self.qemu = dst
        return took

    def close(self):
        self.qemu.close()


class VmletWay:
    """The vmlet samples' VM, moved by an Evict on whichever node runs it."""

    def __init__(self, a, b, name="mv"):
        self.nodes, self.n, self.name = (a, b), 0, name
        a.guest_disk(f"{name}-root")
        a.write_vm(name)
        a.wait_phase(name, "Running", 90)

    def sample(self):
        s_node, d_node = self.nodes[self.n % 2], self.nodes[(self.n + 1) % 2]
        self.n += 1
        t0 = time.perf_counter()
        op = s_node.migrate(self.name)
        done = wait(lambda: s_node.op(op), 180, f"op {op}", interval=0.01,
                    until=lambda o: o and o["status"]["phase"] in ("Completed", "Failed"))
        took = time.perf_counter() - t0
        assert done["status"]["phase"] == "Completed", done
        d_node.wait_phase(self.name, "Running", 30)
        # What the source set aside: removed, so the way back copies the disk afresh.
        for d in ("vms.d", "disks.d"):
            for aside in (s_node.etc / d).glob("*.migrated-to-*"):
                aside.unlink()
        stale = f"{s_node.disk_path(self.name + '-root')}.migrated-to-{d_node.name}"
        pathlib.Path(stale).unlink()
        mig = done["status"]["migration"]
        return Sample(took, mig["pausedMs"], mig.get("qemuDowntimeMs"))  # absent: QEMU did not say


def medians(samples):
    return {k: statistics.median(getattr(x, k) for x in samples
                                 if getattr(x, k) is not None)
            for k in ("total_s", "paused_ms", "qemu_downtime_ms")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6, help="samples per way (default 6)")
    ap.add_argument("--multifd", type=int, default=2,
                    help="raw and vmlet again with this many multifd TLS streams (0: not)")
    args = ap.parse_args()
    net = Network()
    work = pathlib.Path(f"/tmp/bench-migration-{net.tag}")
    pki = Pki(work / "pki")
    guest = build_test_guest() / "guest.iso"
    a = Node(guest, net, pki, 1)
    b = Node(guest, net, pki, 2)
    a.add_peer(b)
    b.add_peer(a)
    # vmlet with multifd: a second pair of nodes, configured so.
    mf = f"multifd-channels={args.multifd}\n"
    c = Node(guest, net, pki, 3, migration_conf=mf) if args.multifd else None
    d = Node(guest, net, pki, 4, migration_conf=mf) if args.multifd else None
    if c:
        c.add_peer(d)
        d.add_peer(c)
    samples = {"raw": [], "vmlet": []}
    if args.multifd:
        samples["raw-multifd"] = []
        samples["vmlet-multifd"] = []
    ways = {}
    try:
        for n in (a, b, c, d):
            if n:
                n.start()
        ways["raw"] = RawWay(a, b, work, "raw", (49200, 49201))
        ways["vmlet"] = VmletWay(a, b)
        if args.multifd:
            ways["raw-multifd"] = RawWay(a, b, work, "rawmfd", (49202, 49203), args.multifd)
            ways["vmlet-multifd"] = VmletWay(c, d, "mvm")
        time.sleep(8)  # the guests boot before any sample
        for _ in range(args.runs):
            for k, way in ways.items():
                samples[k].append(way.sample())
    finally:
        for way in ways.values():  # the raw QEMUs are ours, not a vmletd's: a failed
            if isinstance(way, RawWay):  # sample must not leave them running
                way.close()
        for n in (a, b, c, d):
            if n:
                n.stop()
        net.close()
        shutil.rmtree(work, ignore_errors=True)
    res = {"runs": args.runs, "multifd": args.multifd,
           "samples": {k: [vars(x) for x in v] for k, v in samples.items()},
           "medians": {k: medians(v) for k, v in samples.items()}}
    m = res["medians"]
    res["ratio"] = m["vmlet"]["total_s"] / m["raw"]["total_s"]
    (SOURCE / "build" / "bench-migration.json").write_text(json.dumps(res, indent=2))
    cols = list(m)
    print("| 256 MiB guest + local disk over NBD, TLS | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    print("| total | " + " | ".join(f"{m[k]['total_s']:.2f} s" for k in cols) + " |")
    print("| guest paused, at most | " + " | ".join(f"{m[k]['paused_ms']:.0f} ms" for k in cols)
          + " |")
    print("| QEMU's downtime | " + " | ".join(f"{m[k]['qemu_downtime_ms']:.0f} ms" for k in cols)
          + " |")
    print(f"vmlet / raw total: {res['ratio']:.2f}x; paused: "
          f"{m['vmlet']['paused_ms'] - m['raw']['paused_ms']:+.0f} ms")
    if args.multifd:
        raw_mf = m["raw-multifd"]["total_s"] / m["raw"]["total_s"]
        vmlet_mf = m["vmlet-multifd"]["total_s"] / m["vmlet"]["total_s"]
        print(f"multifd / one stream, total: raw {raw_mf:.2f}x, vmlet {vmlet_mf:.2f}x")

if __name__ == "__main__":
    main()
