#!/usr/bin/python3
"""vmlet benchmarks, each side by side with its baseline in one run (never timed asserts).

1. Process start -> QMP greeting: bare QEMU with a hand-written minimal line vs QEMU with
   vmlet's rendered line for the same VM (the seed's linux-vm), alternating runs.
2. Parse + validate + render of 1000 specs in process (bench-render) vs one `vmlet render`
   process per spec (what a caller shelling out per VM pays), over the accepted goldens.
3. The cloud-init seed ISO for the seed's user-data: built in process (libisofs, written
   atomically with fsync) vs `xorrisofs -volid cidata -joliet -rock` per VM start, which
   is what KubeVirt runs (bench-iso).
4. Hotplug: `vmlet attach --wait` (and the same through the API) -> Attached vs the raw
   QMP blockdev-add + device_add on the same running VM (bench_hotplug.py).

Writes a JSON file (default build/bench-results.json) and prints a short table.
Usage: tests/bench/bench.py [--runs N] [--out FILE] [--only greeting,render,iso,hotplug]
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SOURCE = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VMLET_BUILD_DIR", SOURCE / "build"))
GOLDEN = SOURCE / "tests" / "golden"
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from qmp import connect_unix  # noqa: E402
from vmrun import Node, socket_path  # noqa: E402
sys.path.insert(0, str(SOURCE / "tests" / "bench"))
from bench_hotplug import bench_hotplug  # noqa: E402


def time_to_greeting(argv, qmp_path):
    """Seconds from exec to the first byte of the QMP greeting."""
    if os.path.exists(qmp_path):
        os.unlink(qmp_path)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        s = connect_unix(qmp_path, 30, interval=0.0005, proc=proc)
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
    ap.add_argument("--only", default="greeting,render,iso,hotplug",
                    help="comma-separated benchmarks to run")
    args = ap.parse_args()
    only = set(args.only.split(","))
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="vb", dir="/tmp"))
    # As vmlet decides (node.c): /dev/kvm backed by hardware virtualization, not kvm_pvm.
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK) and any(
        os.path.isdir(f"/sys/module/{m}") for m in ("kvm_intel", "kvm_amd"))
    results = {"host": {"nproc": os.cpu_count(), "kvm": kvm}}
    try:
        if "greeting" in only:
            results["greeting"] = bench_greeting(args.runs, scratch)
        if "render" in only:
            results["render"] = bench_render(args.specs)
        if "iso" in only:
            results["iso"] = bench_iso(200)
        if "hotplug" in only:
            results["hotplug"] = bench_hotplug(args.runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'benchmark':44} {'baseline':>12} {'vmlet':>12} {'ratio':>7}")
    if "greeting" in results:
        g = results["greeting"]
        print(f"{'exec -> QMP greeting, median of ' + str(g['runs']) + ' (ms)':44} "
              f"{g['bare_qemu_median_ms']:>12} {g['vmlet_line_median_ms']:>12} "
              f"{g['ratio_vmlet_over_bare']:>7}")
    if "render" in results:
        r = results["render"]
        print(f"{'render one spec: process vs in-process (us)':44} "
              f"{r['subprocess_per_spec_us']:>12} {r['in_process_per_spec_us']:>12} "
              f"{r['ratio_subprocess_over_in_process']:>7}")
        print(f"{'render ' + str(r['specs']) + ' specs in process, total (ms)':44} "
              f"{'':>12} {r['in_process_total_ms']:>12}")
    if "iso" in results:
        i = results["iso"]
        print(f"{'cidata ISO for the seed user-data (us)':44} "
              f"{i['xorrisofs_median_us']:>12} {i['in_process_median_us']:>12} "
              f"{i['ratio_xorrisofs_over_in_process']:>7}")
    if "hotplug" in results:
        h = results["hotplug"]
        print(f"{'attach -> Attached: raw QMP vs API (ms)':44} "
              f"{h['raw_qmp_median_ms']:>12} {h['api_median_ms']:>12} "
              f"{h['ratio_api_over_raw']:>7}")
        print(f"{'attach -> Attached: raw QMP vs vmlet CLI (ms)':44} "
              f"{h['raw_qmp_median_ms']:>12} {h['cli_median_ms']:>12} "
              f"{h['ratio_cli_over_raw']:>7}")
        print(f"{'  the same QMP with vmlet device properties (ms)':44} "
              f"{'':>12} {h['raw_qmp_vmlet_props_median_ms']:>12}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
