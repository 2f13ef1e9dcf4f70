#!/usr/bin/python3
"""QEMU's memory beyond guest RAM, measured: the numbers behind resources.h.

For a few sizes, vmlet renders the VM, QEMU runs it with exactly that line (TCG, the test
guest booted from its disk), and once the guest has booted and sat for a few seconds the
QEMU process's memory is read from /proc/PID/smaps:

  guest RAM     the anonymous mapping of the guest's size (what the guest touched)
  TCG cache     the translated-code buffer (tb-size, bounded by vmlet's line)
  other         everything else: QEMU's binary and libraries, heap, VGA memory, firmware

"other" is the overhead a KVM host pays (it has no TCG cache); vmlet's formula is printed
beside it. Results go to a JSON file (default build/bench-overhead.json) and a table.
Usage: tests/bench/bench_overhead.py [--out FILE]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

SOURCE = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VMLET_BUILD_DIR", SOURCE / "build"))
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from vmrun import Node, start  # noqa: E402

SIZES = [(1, "256Mi", 256), (1, "1Gi", 1024), (2, "1Gi", 1024), (4, "2Gi", 2048)]
TB_MIB = 128


def smaps(pid, guest_mib):
    """(total, guest RAM, TCG cache, other) resident KiB of pid."""
    regions = []  # [size KiB, rss KiB, perms, name]
    for line in pathlib.Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head[0].endswith(":"):  # "start-end perms offset dev inode [name]"
            regions.append([0, 0, head[1], head[5] if len(head) > 5 else ""])
        elif head[0] == "Size:":
            regions[-1][0] = int(head[1])
        elif head[0] == "Rss:":
            regions[-1][1] = int(head[1])
    total = sum(r[1] for r in regions)
    ram = sum(r[1] for r in regions if r[0] == guest_mib * 1024)
    # The translated code: anonymous executable memory (one region per vCPU thread's share
    # of the buffer under multi-threaded TCG, split by guard pages).
    tcg = sum(r[1] for r in regions if "x" in r[2] and not r[3])
    return total, ram, tcg, total - ram - tcg


def formula_mib(cores, guest_mib):
    return 96 + 8 * cores + guest_mib // 512


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(BUILD / "bench-overhead.json"))
    args = parser.parse_args()
    guest = pathlib.Path(subprocess.run([str(SOURCE / "tests" / "guest" / "build-guest.sh")],
                                        check=True, capture_output=True, text=True)
                         .stdout.strip().splitlines()[-1])
    results = []
    for cores, size, mib in SIZES:
        root = pathlib.Path(tempfile.mkdtemp(prefix="vo", dir="/tmp"))
        node = Node(root, BUILD / "agent" / "vmlet")
        disk = root / "state" / "disks" / "default" / "vm-root.qcow2"
        disk.parent.mkdir(parents=True)
        subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(guest / "guest.iso"),
                        str(disk)], check=True)
        node.add_dropin("disks.d", {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                                    "kind": "VirtualDisk", "metadata": {"name": "vm-root"}})
        spec = root / "vm.json"
        spec.write_text(json.dumps({
            "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
            "metadata": {"name": "vm"},
            "spec": {"virtualMachineClassName": "host", "cpu": {"cores": cores},
                     "memory": {"size": size},
                     "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "vm-root"}]}}))
        argv, _ = node.render(spec)
        qemu, console = start(argv, root / "qemu.log")
        try:
            console.wait_for("VMLET-GUEST-BOOT-OK", 120)
            time.sleep(5)
            total, ram, tcg, other = smaps(qemu.proc.pid, mib)
        finally:
            console.close()
            qemu.close()
            subprocess.run(["rm", "-rf", str(root)])
        r = {"cores": cores, "memory": size, "rss_mib": total / 1024,
             "guest_ram_mib": ram / 1024, "tcg_cache_mib": tcg / 1024,
             "other_mib": other / 1024, "formula_mib": formula_mib(cores, mib)}
        results.append(r)
        print(f"{cores} vCPU {size:>5}: RSS {r['rss_mib']:6.1f} MiB = guest RAM "
              f"{r['guest_ram_mib']:6.1f} + TCG cache {r['tcg_cache_mib']:5.1f} + other "
              f"{r['other_mib']:5.1f}; formula (without TCG) {r['formula_mib']} MiB",
              flush=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
