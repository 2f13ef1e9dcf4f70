#!/usr/bin/python3
"""vmletd benchmarks (issue 3), each beside its baseline in one run; never a timed test.

1. Start: bare QEMU exec -> QMP ready and running (greeting, qmp_capabilities, cont; a
   client polling every 0.5 ms) vs `vmlet start` -> the Running event on vmletd's watch
   stream, and the same through the API without the CLI. Same VM (the guide's linux-vm,
   QEMU line as `vmlet render` prints it), alternating runs, medians; the overheads are
   medians of each round's own differences.
2. vmletd's memory (VmRSS, and RssAnon: its own heap) idle, with 100 defined VMs, and with
   10 of them running (64Mi TCG guests with a blank disk: Running, not booted far).
3. Load and reconcile 1000 drop-ins (500 AlwaysOff, 500 Manual): exec -> READY=1
   (sd_notify) minus the same with no drop-ins, on a fresh node (1000 records written) and
   on a restart (1000 records adopted); plus vmletd's own figure from its log. With the
   state dir on the scratch disk and on tmpfs, and beside it what creating 1000 files costs
   that file system, since a fresh node creates one record per VM.
4. `vmlet get` over those 1000 VMs vs over none (process start, request, table), and the
   API's list alone.

Nodes keep their run dir on tmpfs, as /run/vmlet is, and their state dir on the scratch
disk, as /var/lib/vmlet is (section 3 also with the state dir on tmpfs).
Writes JSON (default build/bench-daemon.json) and prints a table.
Usage: tests/bench/bench_daemon.py [--runs 20] [--out FILE]
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VMLET_BUILD_DIR", SOURCE / "build"))
GOLDEN = SOURCE / "tests" / "golden"
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from daemon import API, UnixHTTPConnection, remove_cgroups  # noqa: E402
from qmp import connect_unix  # noqa: E402
from vmrun import socket_path  # noqa: E402
from waiting import wait  # noqa: E402

VMLET = BUILD / "agent" / "vmlet"
VMLETD = BUILD / "agent" / "vmletd"
NODES = []  # every node started, so that a failing run still stops what it started


class Node:
    """A scratch node and, once started, its vmletd."""

    def __init__(self, root, state=None):
        self.root = pathlib.Path(root)
        self.state = pathlib.Path(state) if state else self.root / "state"
        self.etc = self.root / "etc"
        for d in ("vms.d", "disks.d", "images.d", "classes.d", "secrets.d"):
            (self.etc / d).mkdir(parents=True, exist_ok=True)
        self.conf = self.root / "vmlet.conf"
        # As on a node: the run dir on tmpfs (/run/vmlet), the state dir on disk.
        self.run = pathlib.Path(tempfile.mkdtemp(prefix="vbr", dir="/dev/shm"))
        self.run.chmod(0o711)  # QEMU, as vmlet-qemu, reaches its own directory inside
        # The VMs' cgroups nest below the benchmark's own, as in the tests.
        self.cgroup_parent = f"vmlet-bench-{self.run.name}"
        self.write_conf(self.conf, self.run)
        self.socket = str(self.run / "vmletd.sock")
        self.proc = None
        NODES.append(self)

    def write_conf(self, path, run_dir):
        path.write_text(f"[node]\nname=bench\n[paths]\nrun-dir={run_dir}\n"
                        f"state-dir={self.state}\nconfig-dir={self.etc}\n"
                        f"profiles-dir={SOURCE}/qemu-profiles\n[qemu]\naccel=tcg\n"
                        f"[resources]\ncgroup-parent={self.cgroup_parent}\n")

    def blank_disk(self, name):
        path = self.state / "disks" / "default" / f"{name}.qcow2"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
        (self.etc / "disks.d" / f"{name}.json").write_text(json.dumps({
            "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
            "metadata": {"name": name}}))

    def write_vm(self, name, disk, policy, memory="64Mi"):
        (self.etc / "vms.d" / f"{name}.json").write_text(json.dumps({
            "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {"virtualMachineClassName": "generic", "runPolicy": policy,
                     "cpu": {"cores": 1, "coreFraction": "5%"}, "memory": {"size": memory},
                     "blockDeviceRefs": [{"kind": "VirtualDisk", "name": disk}]}}))

    def start(self):
        """Starts vmletd; returns seconds from exec to its READY=1."""
        notify = str(self.root / "notify.sock")
        if os.path.exists(notify):
            os.unlink(notify)
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(notify)
        ns.settimeout(120)
        # G_SLICE as systemd/vmletd.service sets it.
        env = dict(os.environ, NOTIFY_SOCKET=notify, G_SLICE="always-malloc")
        self.log = open(self.root / "vmletd.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([str(VMLETD), "-c", str(self.conf)], env=env,
                                     stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        try:
            while b"READY=1" not in ns.recv(4096).split(b"\n"):
                pass
        finally:
            ns.close()
        return time.monotonic() - t0

    def ready_log_ms(self):
        """vmletd's own "loaded and reconciled in X ms" from its last start."""
        text = (self.root / "vmletd.log").read_text()
        return float(re.findall(r"loaded and reconciled in ([0-9.]+) ms", text)[-1])

    def stop(self):
        """Stops vmletd and, since vmletd never stops VMs when it exits, the QEMUs it ran."""
        if self.proc and self.proc.poll() is None:
            pids = []
            try:
                _, body = self.request("GET", f"{API}/virtualmachines")
                pids = [vm["status"]["pid"] for vm in body["items"] if "pid" in vm["status"]]
            except OSError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None

    def request(self, method, path, body=None):
        conn = UnixHTTPConnection(self.socket)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        return resp.status, json.loads(payload) if payload else None

    def operate(self, name, op, force=False):
        status, body = self.request(
            "POST", f"{API}/namespaces/default/virtualmachineoperations",
            {"spec": {"virtualMachineName": name, "type": op, "force": force}})
        assert status == 201 and body["status"]["phase"] != "Failed", body
        return body

    def phases(self):
        _, body = self.request("GET", f"{API}/virtualmachines")
        return {vm["metadata"]["name"]: vm["status"]["phase"] for vm in body["items"]}

    def wait_all(self, names, phase, timeout=120):
        def theirs():
            ph = self.phases()
            return {n: ph.get(n) for n in names}
        wait(theirs, timeout, f"{len(names)} VMs {phase}",
             until=lambda got: all(p == phase for p in got.values()))

    def rss_kib(self):
        status = pathlib.Path(f"/proc/{self.proc.pid}/status").read_text()
        get = lambda key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1))
        return {"VmRSS": get("VmRSS"), "RssAnon": get("RssAnon"), "VmHWM": get("VmHWM")}

    def vmlet(self, *args):
        return subprocess.run([str(VMLET), *args, "-c", str(self.conf)], capture_output=True,
                              text=True, check=True)


class Watch:
    """vmletd's watch stream; each event stamped with its arrival time."""

    def __init__(self, node):
        self.events = []
        self.cond = threading.Condition()
        self.conn = UnixHTTPConnection(node.socket, timeout=None)
        self.conn.request("GET", f"{API}/namespaces/default/virtualmachines?watch=true")
        self.resp = self.conn.getresponse()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while line := self.resp.readline():
                now = time.monotonic()
                ev = json.loads(line)
                with self.cond:
                    self.events.append((now, ev["object"]["metadata"]["name"],
                                        ev["object"].get("status", {}).get("phase")))
                    self.cond.notify_all()
        except Exception:  # noqa: BLE001 - the stream ends when the bench closes it
            pass

    def wait(self, name, phase, after, timeout=60):
        """Arrival time of the first event after `after` saying name is in phase (the
        reader's stamp: when this thread notices is not measured)."""
        def arrived():
            return next((t for t, n, p in self.events
                         if t >= after and n == name and p == phase), None)
        with self.cond:  # woken by each event, not polling
            try:
                return wait(arrived, timeout, f"{name} {phase} on the watch", timeout,
                            sleep=self.cond.wait)
            except AssertionError as e:
                e.args = (f"{e}; last events: {self.events[-3:]}",)
                raise

    def close(self):
        self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def qmp_ready_and_running(argv, qmp_path):
    """Bare QEMU: seconds from exec to the reply to `cont` (greeting, capabilities, cont)."""
    if os.path.exists(qmp_path):
        os.unlink(qmp_path)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        s = connect_unix(qmp_path, 30, interval=0.0005, proc=proc)
        f = s.makefile("rwb")
        json.loads(f.readline())  # greeting
        for cmd in ("qmp_capabilities", "cont"):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            f.flush()
            while "return" not in (reply := json.loads(f.readline())):
                assert "error" not in reply, reply
        elapsed = time.monotonic() - t0
        s.close()
        return elapsed
    finally:
        proc.kill()
        proc.wait()


def bench_start(runs, scratch):
    node = Node(scratch / "start")
    node.blank_disk("linux-vm-root")
    seed = json.loads((GOLDEN / "seed-linux-vm.json").read_text())
    seed["spec"]["runPolicy"] = "Manual"
    (node.etc / "vms.d" / "linux-vm.json").write_text(json.dumps(seed))
    # The bare baseline runs vmlet's own line (rendered for another run dir, so both can
    # alternate), with the cidata ISO built once beforehand.
    bare_conf = node.root / "bare.conf"
    node.write_conf(bare_conf, node.run / "bare")
    argv = subprocess.run([str(VMLET), "render", "-c", str(bare_conf),
                           str(node.etc / "vms.d" / "linux-vm.json")],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    qmp = socket_path(argv, "charmonitor")
    pathlib.Path(qmp).parent.mkdir(parents=True)
    cidata = pathlib.Path(qmp).parent / "cidata.iso"
    node.start()
    watch = Watch(node)
    bare, cli, api = [], [], []
    try:
        def stop():
            t = time.monotonic()
            node.operate("linux-vm", "Stop", force=True)
            watch.wait("linux-vm", "Stopped", t)

        def via_cli():
            t0 = time.monotonic()
            subprocess.run([str(VMLET), "start", "linux-vm", "-c", str(node.conf)], check=True,
                           capture_output=True)
            return watch.wait("linux-vm", "Running", t0) - t0

        def via_api():
            t0 = time.monotonic()
            node.operate("linux-vm", "Start")
            return watch.wait("linux-vm", "Running", t0) - t0

        via_cli()  # warm caches; also builds the cidata ISO the bare runs reuse
        shutil.copy(node.run / "vms" / "default.linux-vm" / "cidata.iso", cidata)
        stop()
        qmp_ready_and_running(argv, qmp)
        for _ in range(runs):
            bare.append(qmp_ready_and_running(argv, qmp))
            cli.append(via_cli())
            stop()
            api.append(via_api())
            stop()
    finally:
        watch.close()
        node.stop()
    b, c, a = (statistics.median(x) * 1000 for x in (bare, cli, api))
    # The overheads as medians of each round's own differences: a round measures all three
    # within a few hundred ms, so a host busy with other work skews them less.
    paired = lambda xs: round(statistics.median(x - y for x, y in zip(xs, bare)) * 1000, 1)
    return {"runs": runs, "bare_qemu_ready_running_median_ms": round(b, 1),
            "vmlet_start_cli_to_running_median_ms": round(c, 1),
            "api_start_to_running_median_ms": round(a, 1),
            "overhead_cli_ms": paired(cli), "overhead_api_ms": paired(api),
            "ratio_cli_over_bare": round(c / b, 2), "target_overhead_ms": 5}


def bench_rss(scratch):
    node = Node(scratch / "rss")
    node.blank_disk("shared-root")
    out = {}
    node.start()
    try:
        time.sleep(4)
        out["idle"] = node.rss_kib()
        names = [f"vm{i:03d}" for i in range(100)]
        running = names[:10]
        for i, n in enumerate(names):
            # The ten that will run get disks of their own (QEMU locks images).
            disk = f"{n}-root" if n in running else "shared-root"
            if n in running:
                node.blank_disk(disk)
            node.write_vm(n, disk, "Manual")
        node.wait_all(names, "Stopped")
        # At rest: GLib's file monitor still tracks each just-written file for ~2 s, and
        # the reload its last events trigger is what settles the heap.
        time.sleep(4)
        out["defined_100"] = node.rss_kib()
        for n in running:
            node.operate(n, "Start")
        node.wait_all(running, "Running")
        time.sleep(4)
        out["defined_100_running_10"] = node.rss_kib()
        for n in running:
            node.operate(n, "Stop", force=True)
        node.wait_all(running, "Stopped")
    finally:
        node.stop()
    out["target_mib_with_100"] = 10
    return out


def create_files_ms(directory, count):
    """The file system's own price: create, write and rename count small files."""
    directory.mkdir(parents=True)
    t0 = time.monotonic()
    for i in range(count):
        fd = os.open(directory / f".r{i}.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 1000)
        os.close(fd)
        os.rename(directory / f".r{i}.tmp", directory / f"r{i}.json")
    elapsed = (time.monotonic() - t0) * 1000
    shutil.rmtree(directory)
    return elapsed


def bench_dropins(scratch, count, runs):
    med = lambda xs: round(statistics.median(xs) * 1000, 1)
    names = [f"vm{i:04d}" for i in range(count)]
    out = {"dropins": count, "runs": runs, "target_ms": 200}
    # The same node with its state dir on the scratch disk file system and on tmpfs: a
    # fresh node writes one record per VM, and file creation is the disk's price.
    shm = pathlib.Path(tempfile.mkdtemp(prefix="vbd", dir="/dev/shm"))
    nodes = {}
    try:
        for label, state in (("disk", None), ("tmpfs", shm / "state")):
            node = Node(scratch / f"dropins-{label}", state)
            nodes[label] = node
            node.blank_disk("shared-root")
            empty = []
            for _ in range(runs):
                empty.append(node.start())
                node.stop()
            for i, n in enumerate(names):
                node.write_vm(n, "shared-root", "AlwaysOff" if i % 2 else "Manual")
            fresh, fresh_log, restart, restart_log = [], [], [], []
            for r in range(runs):
                shutil.rmtree(node.state / "vms", ignore_errors=True)
                fresh.append(node.start())
                fresh_log.append(node.ready_log_ms())
                if r == 0:
                    node.wait_all(names, "Stopped")
                node.stop()
                restart.append(node.start())
                restart_log.append(node.ready_log_ms())
                node.stop()
            out[label] = {
                "ready_no_dropins_median_ms": med(empty),
                "ready_fresh_median_ms": med(fresh),
                "load_reconcile_fresh_ms": round(med(fresh) - med(empty), 1),
                "vmletd_log_fresh_median_ms": round(statistics.median(fresh_log), 1),
                "ready_restart_median_ms": med(restart),
                "load_reconcile_restart_ms": round(med(restart) - med(empty), 1),
                "vmletd_log_restart_median_ms": round(statistics.median(restart_log), 1),
                "create_files_median_ms": round(statistics.median(
                    create_files_ms(node.state / f"probe{k}", count) for k in range(3)), 1),
            }
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    # vmlet get over the 1000 VMs of the running vmletd (disk node), then over none; the
    # API's list alone shows what the CLI adds (its own start, parsing, the table).
    get_1000, api_1000 = [], []
    node = nodes["disk"]
    node.start()
    node.vmlet("get")
    for _ in range(20):
        t0 = time.monotonic()
        rows = node.vmlet("get").stdout.count("\n") - 1
        get_1000.append(time.monotonic() - t0)
        t0 = time.monotonic()
        node.request("GET", f"{API}/virtualmachines")
        api_1000.append(time.monotonic() - t0)
    assert rows == count, rows
    node.stop()
    for f in (node.etc / "vms.d").iterdir():
        f.unlink()
    node.start()
    get_0 = []
    for _ in range(20):
        t0 = time.monotonic()
        node.vmlet("get")
        get_0.append(time.monotonic() - t0)
    node.stop()
    out.update({"vmlet_get_1000_median_ms": med(get_1000), "api_list_1000_median_ms": med(api_1000),
                "vmlet_get_0_median_ms": med(get_0)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dropins", type=int, default=1000)
    ap.add_argument("--out", default=str(BUILD / "bench-daemon.json"))
    args = ap.parse_args()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="vbd", dir="/tmp"))
    scratch.chmod(0o711)
    load_before = os.getloadavg()[0]
    try:
        results = {"start": bench_start(args.runs, scratch), "rss_kib": bench_rss(scratch),
                   "dropins": bench_dropins(scratch, args.dropins, 5),
                   "host": {"nproc": os.cpu_count(), "kvm": os.access("/dev/kvm", os.R_OK | os.W_OK) and any(
                             os.path.isdir(f"/sys/module/{m}") for m in ("kvm_intel", "kvm_amd")),
                            "loadavg_1min_before_after": [round(load_before, 2),
                                                          round(os.getloadavg()[0], 2)],
                            "state_dir_fs": subprocess.run(
                                ["stat", "-f", "-c", "%T", str(scratch)], capture_output=True,
                                text=True).stdout.strip()}}
    finally:
        for node in NODES:
            node.stop()
            remove_cgroups(node.cgroup_parent)
            shutil.rmtree(node.run, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    s, r, d = results["start"], results["rss_kib"], results["dropins"]
    mib = lambda k: f"{k / 1024:.1f} MiB"
    n = d["dropins"]
    rows = [
        (f"start -> Running, median of {s['runs']} (ms)", s["bare_qemu_ready_running_median_ms"],
         s["vmlet_start_cli_to_running_median_ms"],
         f"+{s['overhead_cli_ms']} (API: {s['api_start_to_running_median_ms']}, "
         f"+{s['overhead_api_ms']})", "+5 ms"),
        ("vmletd VmRSS: idle vs 100 defined", mib(r["idle"]["VmRSS"]),
         mib(r["defined_100"]["VmRSS"]), f"RssAnon {mib(r['defined_100']['RssAnon'])}",
         "10 MiB"),
        ("vmletd VmRSS: 100 defined, 10 running", "", mib(r["defined_100_running_10"]["VmRSS"]),
         f"RssAnon {mib(r['defined_100_running_10']['RssAnon'])}", ""),
    ]
    for label in ("disk", "tmpfs"):
        x = d[label]
        rows += [
            (f"{n} drop-ins, fresh node, state on {label} (ms)", x["ready_no_dropins_median_ms"],
             x["ready_fresh_median_ms"], f"+{x['load_reconcile_fresh_ms']} (own: "
             f"{x['vmletd_log_fresh_median_ms']}; {n} files: {x['create_files_median_ms']})",
             "200 ms"),
            (f"{n} drop-ins, restart, state on {label} (ms)", x["ready_no_dropins_median_ms"],
             x["ready_restart_median_ms"], f"+{x['load_reconcile_restart_ms']} (own: "
             f"{x['vmletd_log_restart_median_ms']})", "200 ms"),
        ]
    rows.append((f"vmlet get: 0 vs {n} VMs (ms)", d["vmlet_get_0_median_ms"],
                 d["vmlet_get_1000_median_ms"], f"API list alone: {d['api_list_1000_median_ms']}",
                 ""))
    print(f"{'benchmark':46} {'baseline':>10} {'vmlet':>10}  {'difference':44} target")
    for name, base, val, diff, target in rows:
        print(f"{name:46} {base!s:>10} {val!s:>10}  {diff:44} {target}")
    print(f"host load average (1 min) before/after: {results['host']['loadavg_1min_before_after']}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
