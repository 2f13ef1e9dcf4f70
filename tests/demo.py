"""Renders tests/golden/seed-linux-vm.json on a scratch node and boots the test guest."""
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

SOURCE = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from vmrun import Node, make_cidata, start  # noqa: E402


def main(guest_dir):
    t_start = time.monotonic()
    root = pathlib.Path(tempfile.mkdtemp(prefix="vmlet-demo-", dir="/tmp"))
    node = Node(root, SOURCE / "build" / "agent" / "vmlet")
    seed = SOURCE / "tests" / "golden" / "seed-linux-vm.json"
    spec = json.loads(seed.read_text())
    print(f"scratch node: {root}")
    print(f"VM spec: {seed.relative_to(SOURCE)} (the DVP guide's linux-vm example as JSON)")

    disk = root / "state" / "disks" / "default" / "linux-vm-root.qcow2"
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(guest_dir / "guest.iso"),
                    str(disk)], check=True)
    node.add_dropin("disks.d", {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                                "kind": "VirtualDisk", "metadata": {"name": "linux-vm-root"}})
    print(f"VirtualDisk linux-vm-root: {disk} (the test guest, bootable through the BIOS)")

    argv, warnings = node.render(seed)
    print(f"\n$ vmlet render -c {node.conf} {seed.name}")
    for a in argv:
        print(f"  {a}")
    if warnings:
        print(warnings, end="")

    cidata = pathlib.Path(next(json.loads(a)["filename"] for a in argv
                               if '"node-name":"cidata-file"' in a))
    cidata.parent.mkdir(parents=True, exist_ok=True)
    make_cidata(cidata, spec["spec"]["provisioning"]["userData"],
                "instance-id: linux-vm\nlocal-hostname: linux-vm\n")

    print("\nstarting QEMU paused (-S), attaching the serial console, then QMP cont")
    t0 = time.monotonic()

    def show(line):
        if line.strip():
            print(f"  [{time.monotonic() - t0:5.1f}s] console: {line}", flush=True)

    qemu, console = start(argv, root / "qemu.log", echo=show)
    try:
        console.wait_for("VMLET-GUEST-BOOT-OK", 90)
        console.wait_for("VMLET-CIDATA-OK", 20)
        console.wait_for("VMLET-TICK", 20)
        print("guest is up; sending the ACPI power button (QMP system_powerdown)")
        qemu.qmp.cmd("system_powerdown")
        console.wait_for("VMLET-ACPI-POWERDOWN", 30)
        while qemu.qmp.cmd("query-status")["status"] != "shutdown":
            time.sleep(0.1)
        print(f"guest powered off after {time.monotonic() - t0:.1f}s; QEMU status: shutdown")
    finally:
        console.close()
        qemu.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"demo done in {time.monotonic() - t_start:.1f}s")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
