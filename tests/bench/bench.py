#!/usr/bin/python3
"""vmlet benchmarks, each side by side with its baseline in one run (never timed asserts).

1. Process start -> QMP greeting: bare QEMU with a hand-written minimal line vs QEMU with
   vmlet's rendered line for the same VM (the seed's linux-vm), alternating runs.
2. Parse + validate + render of 1000 specs in process (bench-render) vs one `vmlet render`
   process per spec (what a caller shelling out per VM pays), over the accepted goldens.
3. The cloud-init seed ISO for the seed's user-data: built in process (libisofs, written
   atomically with fsync) vs `xorrisofs -volid cidata -joliet -rock` per VM start, which
   is what KubeVirt runs (bench-iso).

Writes a JSON file (default build/bench-results.json) and prints a short table.
Usage: tests/bench/bench.py [--runs N] [--out FILE]
"""
import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SOURCE = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VMLET_BUILD_DIR", SOURCE / "build"))
GOLDEN = SOURCE / "tests" / "golden"
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from vmrun import Node, socket_path  # noqa: E402


def time_to_greeting(argv, qmp_path):
    """Seconds from exec to the first byte of the QMP greeting."""
    if os.path.exists(qmp_path):
        os.unlink(qmp_path)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(qmp_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if proc.poll() is not None:
                    raise RuntimeError(f"QEMU exited with {proc.returncode}: {argv}")
                time.sleep(0.0005)
        s.recv(1)
        elapsed = time.monotonic() - t0
        s.close()
        return elapsed
    finally:
        proc.kill()
        proc.wait()


def bench_greeting(runs, scratch):
    node = Node(scratch / "node", BUILD / "agent" / "vmlet")
    disk_dir = scratch / "node" / "state" / "disks" / "default"
    disk_dir.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk_dir / "linux-vm-root.qcow2"),
                    "1G"], check=True)
    node.add_dropin("disks.d", json.loads((GOLDEN / "node/disks.d/data-disk.json").read_text())
                    | {"metadata": {"name": "linux-vm-root"}})
    argv, _ = node.render(GOLDEN / "seed-linux-vm.json")
    vm_qmp = socket_path(argv, "charmonitor")
    run_dir = pathlib.Path(vm_qmp).parent
    run_dir.mkdir(parents=True, exist_ok=True)
    cidata = run_dir / "cidata.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-o", str(cidata),
                    str(GOLDEN / "seed-linux-vm.json")], check=True)
    bare_qmp = str(scratch / "bare-qmp.sock")
    # What one would type by hand for the same VM: same machine, CPU, memory, disk, cidata.
    bare = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1024",
            "-smp", "1", "-display", "none", "-nodefaults", "-S",
            "-qmp", f"unix:{bare_qmp},server=on,wait=off",
            "-drive", f"file={disk_dir / 'linux-vm-root.qcow2'},if=virtio,format=qcow2",
            "-drive", f"file={cidata},media=cdrom,if=none,id=cd0,readonly=on,format=raw",
            "-device", "ide-cd,drive=cd0,bus=ide.0"]
    bare_t, vmlet_t = [], []
    time_to_greeting(bare, bare_qmp)  # warm the page cache
    for _ in range(runs):
        bare_t.append(time_to_greeting(bare, bare_qmp))
        vmlet_t.append(time_to_greeting(argv, vm_qmp))
    b, v = statistics.median(bare_t), statistics.median(vmlet_t)
    return {"runs": runs, "bare_qemu_median_ms": round(b * 1000, 1),
            "vmlet_line_median_ms": round(v * 1000, 1), "ratio_vmlet_over_bare": round(v / b, 2),
            "vmlet_argc": len(argv), "bare_argc": len(bare)}


def bench_render(count):
    specs = [str(p) for p in sorted(GOLDEN.glob("*.json")) if p.with_suffix(".args").exists()]
    out = subprocess.run([str(BUILD / "tests" / "bench-render"), str(GOLDEN / "node"),
                          str(SOURCE / "qemu-profiles"), str(count), *specs],
                         check=True, capture_output=True, text=True)
    inproc = json.loads(out.stdout)
    conf = pathlib.Path(tempfile.mkstemp(suffix=".conf")[1])
    conf.write_text(f"[paths]\nconfig-dir={GOLDEN / 'node'}\nprofiles-dir={SOURCE / 'qemu-profiles'}\n"
                    "[qemu]\naccel=tcg\n")
    n_proc = min(count, 200)
    t0 = time.monotonic()
    for i in range(n_proc):
        subprocess.run([str(BUILD / "agent" / "vmlet"), "render", "-c", str(conf),
                        specs[i % len(specs)]], check=True, capture_output=True)
    per_proc_us = (time.monotonic() - t0) / n_proc * 1e6
    conf.unlink()
    return {"specs": count, "in_process_total_ms": round(inproc["render_total_us"] / 1000, 1),
            "in_process_per_spec_us": inproc["per_spec_us"],
            "subprocess_per_spec_us": round(per_proc_us, 1),
            "subprocess_sampled_specs": n_proc,
            "ratio_subprocess_over_in_process": round(per_proc_us / inproc["per_spec_us"], 1)}


def bench_iso(builds):
    out = subprocess.run([str(BUILD / "tests" / "bench-iso"), str(GOLDEN / "seed-linux-vm.json"),
                          str(builds)], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"builds": r["builds"], "in_process_median_us": r["inproc_median_us"],
            "in_process_build_only_median_us": r["inproc_build_only_median_us"],
            "xorrisofs_median_us": r["subprocess_median_us"],
            "ratio_xorrisofs_over_in_process": r["ratio"], "iso_bytes": r["iso_bytes"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--specs", type=int, default=1000)
    ap.add_argument("--out", default=str(BUILD / "bench-results.json"))
    args = ap.parse_args()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="vb", dir="/tmp"))
    try:
        results = {"greeting": bench_greeting(args.runs, scratch),
                   "render": bench_render(args.specs),
                   "iso": bench_iso(200),
                   "host": {"nproc": os.cpu_count(), "kvm": os.path.exists("/dev/kvm")}}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    g, r = results["greeting"], results["render"]
    print(f"{'benchmark':44} {'baseline':>12} {'vmlet':>12} {'ratio':>7}")
    print(f"{'exec -> QMP greeting, median of ' + str(g['runs']) + ' (ms)':44} "
          f"{g['bare_qemu_median_ms']:>12} {g['vmlet_line_median_ms']:>12} "
          f"{g['ratio_vmlet_over_bare']:>7}")
    print(f"{'render one spec: process vs in-process (us)':44} "
          f"{r['subprocess_per_spec_us']:>12} {r['in_process_per_spec_us']:>12} "
          f"{r['ratio_subprocess_over_in_process']:>7}")
    print(f"{'render ' + str(r['specs']) + ' specs in process, total (ms)':44} "
          f"{'':>12} {r['in_process_total_ms']:>12}")
    i = results["iso"]
    print(f"{'cidata ISO for the seed user-data (us)':44} "
          f"{i['xorrisofs_median_us']:>12} {i['in_process_median_us']:>12} "
          f"{i['ratio_xorrisofs_over_in_process']:>7}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
