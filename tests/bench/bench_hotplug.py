#!/usr/bin/python3
"""Hotplug latency: `vmlet attach --wait` -> Attached versus the raw QMP sequence, on the
same running VM, in one run.

Three ways to attach the same 64 MiB qcow2 to the same VM (the test guest, booted):
  raw   a QMP client of our own does by hand what vmletd does:
        blockdev-add {qcow2 over file} + device_add, timed to device_add's return. vmletd
        holds the VM's only QMP connection, so it is SIGKILLed for these runs (the VM
        keeps running) and started again afterwards; it re-adopts the VM.
  props the same client sending the three commands vmletd sends, with its properties
        (storage node with auto-read-only and discard, format node, device_add): what
        QEMU itself needs for vmlet's device, so api - props is vmletd's own cost.
  api   HTTP PUT of the attachment on vmletd's socket -> the Attached event on a watch
        stream opened beforehand: vmletd's own cost (validation, drop-in written with
        fsync, reload, blockdev-add x2 + device_add, record written with fsync, event).
  cli   `vmlet attach VM --disk NAME --wait` as a user runs it: the above plus a process
        start, option parsing and a second connection for the watch.
Each attach is followed by a detach (not timed). Blocks of runs alternate so drift on a
noisy host hits all three alike. Medians, never timed assertions.
"""
import json
import os
import pwd
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import time

SOURCE = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from conftest import build_test_guest, vmlet_binary  # noqa: E402
from daemon import API, Daemon  # noqa: E402
from qmp import QMP  # noqa: E402
from vmrun import Console  # noqa: E402
from waiting import wait  # noqa: E402

VMBDA = f"{API}/namespaces/default/virtualmachineblockdeviceattachments"


class Watch:
    """A watch stream on the attachments, read line by line from a raw socket."""

    def __init__(self, sock_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        self.sock.sendall(f"GET {VMBDA}?watch=true HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.buf = b""
        self._until(b"\r\n\r\n")
        self.buf = self.buf.split(b"\r\n\r\n", 1)[1]

    def _until(self, token):
        while token not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("watch closed")
            self.buf += data

    def _receive(self, seconds):
        """Blocks until more of the stream arrives (at most seconds)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise RuntimeError("watch closed")
        self.buf += data

    def wait_phase(self, name, phase, timeout=60):
        """Reads events (chunk framing is skipped: every event is one JSON line) until
        name reaches phase; each read returns as soon as data arrives."""
        def reached():
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"{"):
                    continue  # a chunk size line
                ev = json.loads(line)
                obj = ev["object"]
                if obj["metadata"]["name"] != name:
                    continue
                if phase is None and ev["type"] == "DELETED":
                    return True
                if obj.get("status", {}).get("phase") == phase:
                    return True
                if obj.get("status", {}).get("phase") == "Failed":
                    raise RuntimeError(json.dumps(obj["status"]))
            return False
        wait(reached, timeout, f"attachment {name} phase {phase}", timeout, sleep=self._receive)

    def close(self):
        self.sock.close()


def manifest(name):
    return {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
            "kind": "VirtualMachineBlockDeviceAttachment", "metadata": {"name": name},
            "spec": {"virtualMachineName": "web",
                     "blockDeviceRef": {"kind": "VirtualDisk", "name": "bench"}}}


def run_api(d, runs):
    out = []
    for i in range(runs):
        name = f"api-{i}"
        w = Watch(d.socket)
        t0 = time.perf_counter()
        status, _ = d.request("PUT", f"{VMBDA}/{name}", manifest(name))
        assert status == 201, status
        w.wait_phase(name, "Attached")
        out.append(time.perf_counter() - t0)
        d.request("DELETE", f"{VMBDA}/{name}")
        w.wait_phase(name, None)
        w.close()
    return out


def run_cli(d, runs):
    out = []
    for i in range(runs):
        name = f"cli-{i}"
        t0 = time.perf_counter()
        subprocess.run([str(vmlet_binary()), "attach", "web", "--disk", "bench", "--name", name,
                        "--wait", "-c", str(d.conf)], check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
        subprocess.run([str(vmlet_binary()), "detach", "--name", name, "--wait", "-c",
                        str(d.conf)], check=True, capture_output=True)
    return out


def unplug(q, dev, nodes):
    q.events.clear()
    q.cmd("device_del", id=dev)
    q.sock.settimeout(30)
    while not any(e["event"] == "DEVICE_DELETED" and e.get("data", {}).get("device") == dev
                  for e in q.events):
        line = q.file.readline()
        if line:
            q.events.append(json.loads(line))
    for node in nodes:
        q.cmd("blockdev-del", **{"node-name": node})


def run_raw(d, disk, runs):
    """Returns (raw, props) latencies, alternating, with vmletd killed meanwhile."""
    d.kill(signal.SIGKILL)
    q = QMP(str(d.root / "run" / "vms" / "default.web" / "qmp.sock"))
    raw, props = [], []
    try:
        for i in range(runs):
            node, dev = f"raw{i}", f"rawdev{i}"
            t0 = time.perf_counter()
            q.cmd("blockdev-add", **{"driver": "qcow2", "node-name": node,
                                     "file": {"driver": "file", "filename": str(disk)}})
            q.cmd("device_add", driver="virtio-blk-pci", id=dev, drive=node, bus="pci.6")
            raw.append(time.perf_counter() - t0)
            unplug(q, dev, [node])
            # vmlet's own properties (qemu-devices.c), sent one by one.
            t0 = time.perf_counter()
            q.cmd("blockdev-add", **{"driver": "file", "filename": str(disk),
                                     "node-name": "p-file", "auto-read-only": True,
                                     "discard": "unmap"})
            q.cmd("blockdev-add", **{"node-name": "p-fmt", "read-only": False,
                                     "driver": "qcow2", "file": "p-file"})
            q.cmd("device_add", **{"driver": "virtio-blk-pci", "bus": "pci.6", "addr": "0x0",
                                   "drive": "p-fmt", "id": "p-dev", "serial": "bench"})
            props.append(time.perf_counter() - t0)
            unplug(q, "p-dev", ["p-fmt", "p-file"])
    finally:
        q.close()
        d.start()
    return raw, props


def bench_hotplug(runs):
    d = Daemon(build_test_guest() / "guest.iso")
    try:
        d.guest_disk("web-root")
        d.write_vm("web")
        disk = d.root / "state" / "disks" / "default" / "bench.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
        # QEMU runs as vmlet-qemu: the raw baseline needs the disk given to it, which vmletd
        # does itself before each attach.
        qemu_user = pwd.getpwnam("vmlet-qemu")
        os.chown(disk, qemu_user.pw_uid, qemu_user.pw_gid)
        os.chmod(disk, 0o600)
        (d.etc / "disks.d" / "bench.json").write_text(json.dumps({
            "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
            "metadata": {"name": "bench"}}))
        d.start()
        d.wait_phase("web", "Running")
        con = Console(str(d.root / "run" / "vms" / "default.web" / "console.sock"))
        con.wait_for("VMLET-BLOCK", 90)  # the guest handles ACPI unplug from here on
        raw, props, api, cli = [], [], [], []
        per_block = max(1, runs // 3)
        for _ in range(3):
            r, p = run_raw(d, disk, per_block)
            raw += r
            props += p
            d.wait_phase("web", "Running", 30)
            api += run_api(d, per_block)
            cli += run_cli(d, per_block)
        con.close()
    finally:
        d.stop()
    ms = lambda xs: round(statistics.median(xs) * 1000, 2)  # noqa: E731
    every = lambda xs: [round(x * 1000, 2) for x in xs]  # noqa: E731
    return {"runs": len(raw), "raw_qmp_median_ms": ms(raw),
            "raw_qmp_vmlet_props_median_ms": ms(props), "api_median_ms": ms(api),
            "cli_median_ms": ms(cli), "api_overhead_ms": round(ms(api) - ms(raw), 2),
            "api_overhead_vs_props_ms": round(ms(api) - ms(props), 2),
            "cli_overhead_ms": round(ms(cli) - ms(raw), 2),
            "ratio_api_over_raw": round(ms(api) / ms(raw), 2),
            "ratio_cli_over_raw": round(ms(cli) / ms(raw), 2),
            "all_raw_ms": every(raw), "all_props_ms": every(props), "all_api_ms": every(api),
            "all_cli_ms": every(cli)}


if __name__ == "__main__":
    r = bench_hotplug(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
    print(json.dumps({k: v for k, v in r.items() if not k.startswith("all_")}, indent=2))
