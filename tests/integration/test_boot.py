"""The test guest booted by vmlet's rendered command line, through the BIOS boot order.

The guest (tests/guest) prints markers on its serial console; vmlet's line puts that
console on a unix socket, which is read here. Boot is through SeaBIOS and the
blockDeviceRefs order (bootindex, strict), never -kernel.
"""
import hashlib
import json
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import GOLDEN, vmlet_binary
from vmrun import Node, make_cidata, start
from waiting import wait

BOOT_TIMEOUT = 60  # about 6-9 s here; generous for a loaded 2-core TCG machine


@pytest.fixture
def node():
    root = pathlib.Path(tempfile.mkdtemp(prefix="vb", dir="/tmp"))
    yield Node(root, vmlet_binary())
    shutil.rmtree(root, ignore_errors=True)


def disk_dropin(node, name, image=None, size="64M"):
    """A VirtualDisk at the node's default path: a qcow2 copy of image, or blank."""
    path = node.root / "state" / "disks" / "default" / f"{name}.qcow2"
    path.parent.mkdir(parents=True, exist_ok=True)
    if image:
        subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(image), str(path)],
                       check=True)
    else:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    node.add_dropin("disks.d", {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                                "kind": "VirtualDisk", "metadata": {"name": name}})
    return path


def guest_image_dropin(node, test_guest):
    """ClusterVirtualImage "guest": the bootable test guest ISO."""
    image_path = node.root / "state" / "images" / "guest.iso"
    image_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(test_guest / "guest.iso", image_path)
    node.add_dropin("images.d", {
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "ClusterVirtualImage",
        "metadata": {"name": "guest"}, "spec": {"local": {"path": str(image_path)}}})


def cidata_for(argv):
    arg = next(a for a in argv if '"node-name":"cidata-file"' in a)
    return pathlib.Path(json.loads(arg)["filename"])


def test_seed_linux_vm_boots(node, test_guest, qemu_available):
    """The seed's linux-vm, verbatim: its disk boots, its cloud-init reaches the guest."""
    disk_dropin(node, "linux-vm-root", image=test_guest / "guest.iso")
    seed = json.loads((GOLDEN / "seed-linux-vm.json").read_text())
    user_data = seed["spec"]["provisioning"]["userData"]
    argv, warnings = node.render(GOLDEN / "seed-linux-vm.json")
    assert warnings == ""
    meta_data = "instance-id: linux-vm\nlocal-hostname: linux-vm\n"
    cidata = cidata_for(argv)
    cidata.parent.mkdir(parents=True, exist_ok=True)
    make_cidata(cidata, user_data, meta_data)

    qemu, console = start(argv, node.root / "qemu.log")
    try:
        console.wait_for("VMLET-GUEST-BOOT-OK", BOOT_TIMEOUT)
        assert console.wait_for("VMLET-NPROC", 10) == "VMLET-NPROC 1"
        mem_kb = int(console.wait_for("VMLET-MEM-KB", 10).split()[1])
        assert 900 * 1024 < mem_kb <= 1024 * 1024  # 1Gi less what the kernel reserves
        console.wait_for("VMLET-CIDATA-OK", 10)
        got = "\n".join(console.section("VMLET-CIDATA-BEGIN user-data",
                                        "VMLET-CIDATA-END user-data")) + "\n"
        assert got == user_data
        sha = hashlib.sha256(user_data.encode()).hexdigest()
        assert f"VMLET-CIDATA-FILE user-data {len(user_data.encode())} {sha}" in console.lines
        block = console.wait_for("VMLET-BLOCK ", 10).split()[1:]
        assert "vda" in block and "sr0" in block  # the root disk and the cidata CD-ROM

        # ACPI power button: the guest shuts down; -no-shutdown keeps QEMU for the agent.
        qemu.qmp.cmd("system_powerdown")
        console.wait_for("VMLET-ACPI-POWERDOWN", 20)
        wait(lambda: qemu.qmp.cmd("query-status")["status"], 20, "QEMU status shutdown", 0.1,
             until=lambda status: status == "shutdown")
        assert any(e["event"] == "SHUTDOWN" and e["data"]["guest"] for e in qemu.qmp.events)
    finally:
        console.close()
        qemu.close()


def test_boot_order_falls_through_to_next_device(node, test_guest, qemu_available):
    """A blank disk listed first is tried first and skipped; the guest ISO listed second
    boots. Two cores with the generic class (Nehalem) are what the guest sees."""
    disk_dropin(node, "blank-disk")
    guest_image_dropin(node, test_guest)
    vm = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
          "metadata": {"name": "order"},
          "spec": {"virtualMachineClassName": "generic", "cpu": {"cores": 2, "coreFraction": "50%"},
                   "memory": {"size": "256Mi"},
                   "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "blank-disk"},
                                       {"kind": "ClusterVirtualImage", "name": "guest"}]}}
    vm_path = node.root / "order.json"
    vm_path.write_text(json.dumps(vm))
    argv, _ = node.render(vm_path)
    qemu, console = start(argv, node.root / "qemu.log")
    try:
        console.wait_for("VMLET-GUEST-BOOT-OK", BOOT_TIMEOUT)
        assert console.wait_for("VMLET-NPROC", 10) == "VMLET-NPROC 2"
        console.wait_for("VMLET-CIDATA-NONE", 10)
        block = console.wait_for("VMLET-BLOCK ", 10).split()[1:]
        assert "vda" in block and "sr0" in block
    finally:
        console.close()
        qemu.close()


def test_boot_order_is_strict(node, test_guest, qemu_available):
    """Only blockDeviceRefs boot. The provisioning CD-ROM has no boot index, so even a
    bootable ISO in its place must not boot (-boot strict=on): without strict ordering
    SeaBIOS would fall back to it after the blank disk."""
    disk_dropin(node, "blank-disk")
    vm = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
          "metadata": {"name": "strict"},
          "spec": {"virtualMachineClassName": "host", "cpu": {"cores": 1},
                   "memory": {"size": "256Mi"},
                   "provisioning": {"type": "UserData", "userData": "#cloud-config\n"},
                   "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "blank-disk"}]}}
    vm_path = node.root / "strict.json"
    vm_path.write_text(json.dumps(vm))
    argv, _ = node.render(vm_path)
    cidata = cidata_for(argv)
    cidata.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(test_guest / "guest.iso", cidata)
    qemu, console = start(argv, node.root / "qemu.log")
    try:
        with pytest.raises(AssertionError, match="'VMLET-GUEST-BOOT-OK': not reached in 20 s"):
            console.wait_for("VMLET-GUEST-BOOT-OK", 20)
        assert qemu.qmp.cmd("query-status")["status"] == "running"
    finally:
        console.close()
        qemu.close()


def test_strict_test_would_notice_a_boot(node, test_guest, qemu_available):
    """Control for the test above: the same bootable ISO listed in blockDeviceRefs after
    the blank disk does boot, so the timeout above is not the guest being slow."""
    disk_dropin(node, "blank-disk")
    guest_image_dropin(node, test_guest)
    vm = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
          "metadata": {"name": "control"},
          "spec": {"virtualMachineClassName": "host", "cpu": {"cores": 1},
                   "memory": {"size": "256Mi"},
                   "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "blank-disk"},
                                       {"kind": "ClusterVirtualImage", "name": "guest"}]}}
    vm_path = node.root / "control.json"
    vm_path.write_text(json.dumps(vm))
    argv, _ = node.render(vm_path)
    qemu, console = start(argv, node.root / "qemu.log")
    try:
        line = console.wait_for("VMLET-GUEST-BOOT-OK", 20)
        assert line.startswith("VMLET-GUEST-BOOT-OK uptime=")
    finally:
        console.close()
        qemu.close()
