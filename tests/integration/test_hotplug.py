"""Hotplug with VirtualMachineBlockDeviceAttachment (issue 7), against a real vmletd, real
QEMU (TCG) and the test guest, whose serial console reports every block device change
(VMLET-BLOCK-ADDED / VMLET-BLOCK-REMOVED, tests/guest/README.md).

Pausing: QEMU's QMP socket takes one client at a time and vmletd holds it, so the tests
pause a VM through vmletd itself (`vmlet pause`, QMP stop; KubeVirt's pause subresource).
Where a test must look at QEMU directly it kills vmletd first (the VM keeps running) and
then talks QMP itself.
"""
import json
import os
import pwd
import re
import signal
import subprocess
import time

import pytest

from conftest import vmlet_binary
from daemon import API, Daemon, qemu_pids
from qmp import QMP
from vmrun import Console
from waiting import wait

VMBDA = f"{API}/namespaces/default/virtualmachineblockdeviceattachments"
DETACH_WAIT_S = 10  # VMLET_DETACH_WAIT_S in agent/core/attachctl.h


@pytest.fixture
def daemon(test_guest, qemu_available):
    d = Daemon(test_guest / "guest.iso")
    yield d
    d.stop()


class Guest:
    """The guest's serial console with a read position: each expectation looks only at
    lines after the previous match, so "printed again" and "never printed" can be told."""

    def __init__(self, d, vm):
        self.con = Console(str(d.root / "run" / "vms" / f"default.{vm}" / "console.sock"))
        self.pos = 0

    def expect(self, marker, timeout=60):
        def found():
            for i in range(self.pos, len(self.con.lines)):
                if self.con.lines[i].split(" ")[0] == marker:
                    self.pos = i + 1
                    return self.con.lines[i]
        try:
            return wait(found, timeout, f"console line {marker}", 0.5, sleep=self.con._pump)
        except AssertionError as e:
            e.args = (f"{e}; last lines: {self.con.lines[-8:]}",)
            raise

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.con._pump(0.2)

    def count(self, line):
        return sum(1 for l in self.con.lines if l == line)

    def close(self):
        self.con.close()


def vmlet(d, *args, check=True):
    r = subprocess.run([str(vmlet_binary()), *args, "-c", str(d.conf)], capture_output=True,
                       text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def blank_disk(d, name, size="64M", create=True, dropin=True):
    path = d.root / "state" / "disks" / "default" / f"{name}.qcow2"
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    if dropin:
        (d.etc / "disks.d" / f"{name}.json").write_text(json.dumps({
            "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
            "metadata": {"name": name}, "spec": {"persistentVolumeClaim": {"size": size}}}))
    return path


def iso_image(d, name, label="HOTISO"):
    path = d.root / "state" / "images" / "default" / f"{name}.iso"
    src = d.root / f"{name}-src"
    src.mkdir(parents=True)
    (src / "readme.txt").write_text("hot-plugged\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-o", str(path), str(src)],
                   check=True, capture_output=True)
    (d.etc / "images.d" / f"{name}.json").write_text(json.dumps({
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualImage",
        "metadata": {"name": name}, "spec": {"local": {"format": "iso"}}}))
    return path


def manifest(name, vm, kind, block):
    return {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
            "kind": "VirtualMachineBlockDeviceAttachment", "metadata": {"name": name},
            "spec": {"virtualMachineName": vm, "blockDeviceRef": {"kind": kind, "name": block}}}


def attach(d, name, vm, kind, block):
    return d.request("PUT", f"{VMBDA}/{name}", manifest(name, vm, kind, block))


def att(d, name):
    status, body = d.request("GET", f"{VMBDA}/{name}")
    return body if status == 200 else None


def attached_cond(a):
    return next(c for c in a["status"]["conditions"] if c["type"] == "Attached")


def wait_att(d, name, phase, timeout=60):
    """The attachment once in phase; phase None: once it is gone."""
    return d.wait_for(lambda: att(d, name), timeout, f"attachment {name} phase {phase}", 0.05,
                      until=lambda a: (a and a["status"]["phase"] == phase)
                      or (a is None and phase is None))


def image_busy(path):
    """Whether a QEMU still holds the image (its write lock refuses a reader)."""
    r = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True,
                       text=True)
    return r.returncode != 0 and "lock" in r.stderr


def start_vm(d, name="web", user_data=None, **spec):
    d.guest_disk(f"{name}-root")
    if user_data:
        spec["provisioning"] = {"type": "UserData", "userData": user_data}
    d.write_vm(name, **spec)


def test_attach_blank_disk_write_and_detach(daemon):
    """The seed's walk-through with vmlet: attach the empty disk blank-disk to the running
    linux-vm, see it in the guest, write to it from the guest, detach by deleting the
    attachment; the data is in the qcow2 file afterwards."""
    start_vm(daemon, "linux-vm", user_data="#cloud-config\n#vmlet: write-pattern vdb ab 1024\n")
    blank = blank_disk(daemon, "blank-disk")
    daemon.start()
    daemon.wait_phase("linux-vm", "Running")
    guest = Guest(daemon, "linux-vm")
    try:
        assert guest.expect("VMLET-BLOCK").split()[1:] == ["sr0", "vda", "vda1"]
        r = vmlet(daemon, "attach", "linux-vm", "--disk", "blank-disk", "--name",
                  "attach-blank-disk", "--wait")
        assert r.stdout == ("virtualmachineblockdeviceattachment.virtualization.deckhouse.io/"
                            "attach-blank-disk created\n")
        # The seed's `d8 k get vmbda attach-blank-disk`, column for column.
        out = vmlet(daemon, "get", "vmbda", "attach-blank-disk").stdout.splitlines()
        assert re.split(r"\s{3,}", out[0].strip()) == ["NAME", "PHASE", "VIRTUAL MACHINE NAME",
                                                      "AGE"]
        assert out[1].split()[:3] == ["attach-blank-disk", "Attached", "linux-vm"]
        # The guest sees a new disk (the seed's lsblk), and writes 1 MiB of 0xab to it.
        assert guest.expect("VMLET-BLOCK-ADDED") == "VMLET-BLOCK-ADDED vdb"
        assert guest.expect("VMLET-WRITE-OK") == "VMLET-WRITE-OK vdb"
        refs = daemon.vm("linux-vm")["status"]["blockDeviceRefs"]
        assert refs == [
            {"kind": "VirtualDisk", "name": "linux-vm-root", "target": "vd-linux-vm-root",
             "attached": True, "hotplugged": False},
            {"kind": "VirtualDisk", "name": "blank-disk", "target": "vd-blank-disk",
             "attached": True, "hotplugged": True,
             "virtualMachineBlockDeviceAttachmentName": "attach-blank-disk"}]
        assert image_busy(blank)  # QEMU holds it while attached
        # Given to QEMU's unprivileged user before QEMU opened it; nobody else may read it.
        st = blank.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam("vmlet-qemu").pw_uid, 0o600)

        # The seed's `d8 k delete vmbda attach-blank-disk`.
        r = vmlet(daemon, "delete", "vmbda", "attach-blank-disk")
        assert "deleted" in r.stdout
        wait_att(daemon, "attach-blank-disk", None, 30)
        assert guest.expect("VMLET-BLOCK-REMOVED", 30) == "VMLET-BLOCK-REMOVED vdb"
    finally:
        guest.close()
    # blockdev-del came after DEVICE_DELETED: the image is closed and holds the pattern.
    assert not image_busy(blank)
    r = subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0xab 0 1M", str(blank)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "read 1048576/1048576 bytes" in r.stdout, r.stdout + r.stderr
    assert "Pattern verification failed" not in r.stdout
    vm = daemon.vm("linux-vm")
    assert [b["name"] for b in vm["status"]["blockDeviceRefs"]] == ["linux-vm-root"]
    log = daemon.log.read_text()
    assert ("attachment default/attach-blank-disk: phase InProgress" in log and
            "attachment default/attach-blank-disk: phase Attached" in log and
            "attachment default/attach-blank-disk: phase Terminating" in log)


SEED_ISO_VMBDA = """apiVersion: virtualization.deckhouse.io/v1alpha2
kind: VirtualMachineBlockDeviceAttachment
metadata:
  name: attach-ubuntu-iso
spec:
  blockDeviceRef:
    kind: VirtualImage # Или ClusterVirtualImage.
    name: ubuntu-iso
  virtualMachineName: linux-vm
"""


def test_iso_image_attaches_as_cdrom(daemon):
    """The seed's second example, its YAML as printed: an ISO VirtualImage is hot-plugged
    read-only as a CD-ROM (scsi-cd on virtio-scsi)."""
    start_vm(daemon, "linux-vm")
    iso = iso_image(daemon, "ubuntu-iso")
    daemon.start()
    daemon.wait_phase("linux-vm", "Running")
    guest = Guest(daemon, "linux-vm")
    try:
        guest.expect("VMLET-BLOCK")
        r = subprocess.run([str(vmlet_binary()), "apply", "-f", "-", "-c", str(daemon.conf)],
                           input=SEED_ISO_VMBDA, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ("virtualmachineblockdeviceattachment.virtualization.deckhouse.io/"
                            "attach-ubuntu-iso created\n")
        a = wait_att(daemon, "attach-ubuntu-iso", "Attached", 30)
        assert guest.expect("VMLET-BLOCK-ADDED") == "VMLET-BLOCK-ADDED sr0"  # a CD-ROM
        assert a["status"]["target"] == "vi-ubuntu-iso"
        assert a["spec"] == {"virtualMachineName": "linux-vm",
                             "blockDeviceRef": {"kind": "VirtualImage", "name": "ubuntu-iso"}}
        # Read-only: a second reader is fine while it is attached (no write lock).
        assert not image_busy(iso)
        vmlet(daemon, "detach", "linux-vm", "--image", "ubuntu-iso", "--wait")
        assert guest.expect("VMLET-BLOCK-REMOVED", 30) == "VMLET-BLOCK-REMOVED sr0"
        assert att(daemon, "attach-ubuntu-iso") is None
    finally:
        guest.close()


def test_detach_while_paused_completes_after_resume(daemon):
    """device_del while the VM is paused gets no DEVICE_DELETED: the attachment stays
    Terminating and says why, nothing is deleted under the device, and the detach completes
    once the VM runs again."""
    start_vm(daemon)
    blank = blank_disk(daemon, "scratch")
    daemon.start()
    daemon.wait_phase("web", "Running")
    guest = Guest(daemon, "web")
    try:
        guest.expect("VMLET-BLOCK")
        vmlet(daemon, "attach", "web", "--disk", "scratch", "--wait")
        assert guest.expect("VMLET-BLOCK-ADDED") == "VMLET-BLOCK-ADDED vdb"
        vmlet(daemon, "pause", "web")
        daemon.wait_vm("web", 10, "Paused", 0.05, until=lambda vm: "Paused" in {
            c["type"] for c in vm["status"]["conditions"]})
        vmlet(daemon, "detach", "web", "--disk", "scratch")
        a = wait_att(daemon, "web-scratch", "Terminating", 10)
        # Well past the bounded wait: still Terminating, with the reason; the node is kept.
        time.sleep(DETACH_WAIT_S + 1)
        a = att(daemon, "web-scratch")
        assert a["status"]["phase"] == "Terminating"
        cond = attached_cond(a)
        assert cond["reason"] == "DetachPending"
        assert cond["message"].startswith("the VM is paused")
        assert image_busy(blank)
        # A second detach while it is still going is refused with the reason.
        r = vmlet(daemon, "detach", "--name", "web-scratch", check=False)
        assert r.returncode == 1 and "is already being detached" in r.stderr
        vmlet(daemon, "unpause", "web")
        wait_att(daemon, "web-scratch", None, 30)
        assert guest.expect("VMLET-BLOCK-REMOVED", 30) == "VMLET-BLOCK-REMOVED vdb"
    finally:
        guest.close()
    assert not image_busy(blank)
    assert "Paused" not in {c["type"] for c in daemon.vm("web")["status"]["conditions"]}


def test_missing_disk_is_pending_until_it_appears(daemon):
    start_vm(daemon)
    daemon.start()
    daemon.wait_phase("web", "Running")
    guest = Guest(daemon, "web")
    try:
        guest.expect("VMLET-BLOCK")
        status, a = attach(daemon, "late", "web", "VirtualDisk", "late-disk")
        assert status == 201
        a = wait_att(daemon, "late", "Pending", 10)
        ready = {c["type"]: c for c in a["status"]["conditions"]}["BlockDeviceReady"]
        assert ready["status"] == "False" and ready["reason"] == "BlockDeviceNotReady"
        assert ready["message"] == 'VirtualDisk "late-disk" not found in namespace "default"'
        # The drop-in appears first, the file later: still Pending, now for the file.
        path = blank_disk(daemon, "late-disk", create=False)
        daemon.wait_for(lambda: attached_cond(att(daemon, "late")).get("message", ""), 10,
                        "attachment late: its file does not exist",
                        until=lambda message: "does not exist" in message)
        assert attached_cond(att(daemon, "late"))["message"] == \
            f'VirtualDisk "late-disk": {path} does not exist'
        assert att(daemon, "late")["status"]["phase"] == "Pending"
        blank_disk(daemon, "late-disk", dropin=False)
        wait_att(daemon, "late", "Attached", 30)
        assert guest.expect("VMLET-BLOCK-ADDED") == "VMLET-BLOCK-ADDED vdb"
    finally:
        guest.close()


def test_double_attach_and_detach(daemon):
    """The same attachment twice is one device; the same disk under a second name, or in
    a second VM, is refused with the holder's name; a second detach finds nothing."""
    start_vm(daemon)
    daemon.write_vm("other", runPolicy="AlwaysOff")
    blank_disk(daemon, "data")
    daemon.start()
    daemon.wait_phase("web", "Running")
    guest = Guest(daemon, "web")
    try:
        guest.expect("VMLET-BLOCK")
        r = vmlet(daemon, "attach", "web", "--disk", "data", "--wait")
        assert r.stdout.endswith("/web-data created\n")
        r = vmlet(daemon, "attach", "web", "--disk", "data", "--wait")
        assert r.stdout.endswith("/web-data unchanged\n")
        r = vmlet(daemon, "attach", "web", "--disk", "data", "--name", "again", check=False)
        assert r.returncode == 1
        assert ('VirtualDisk "data" is already attached to VirtualMachine "web" by '
                'VirtualMachineBlockDeviceAttachment "web-data" (HTTP 409)') in r.stderr
        r = vmlet(daemon, "attach", "other", "--disk", "data", check=False)
        assert r.returncode == 1
        assert ('VirtualDisk "data" is attached read-write to VirtualMachine "web" by '
                'VirtualMachineBlockDeviceAttachment "web-data"') in r.stderr
        # A drop-in written by hand is not refused up front: it is Failed, with the reason.
        (daemon.etc / "attachments.d" / "by-hand.json").write_text(
            json.dumps(manifest("by-hand", "other", "VirtualDisk", "data")))
        a = wait_att(daemon, "by-hand", "Failed", 10)
        assert attached_cond(a)["reason"] == "Conflict"
        (daemon.etc / "attachments.d" / "by-hand.json").unlink()
        wait_att(daemon, "by-hand", None, 10)
        guest.drain(1)
        assert guest.count("VMLET-BLOCK-ADDED vdb") == 1

        vmlet(daemon, "detach", "web", "--disk", "data", "--wait")
        assert guest.expect("VMLET-BLOCK-REMOVED", 30) == "VMLET-BLOCK-REMOVED vdb"
        r = vmlet(daemon, "detach", "web", "--disk", "data", check=False)
        assert r.returncode == 1
        assert ('no VirtualMachineBlockDeviceAttachment attaches VirtualDisk "data" to '
                'VirtualMachine "web"') in r.stderr
        status, body = daemon.request("DELETE", f"{VMBDA}/web-data")
        assert status == 404
        guest.drain(1)
        assert guest.count("VMLET-BLOCK-REMOVED vdb") == 1
    finally:
        guest.close()


def qemu_view(d, vm="web"):
    """Devices and block nodes as QEMU itself reports them (vmletd must not be running)."""
    q = QMP(str(d.root / "run" / "vms" / f"default.{vm}" / "qmp.sock"))
    try:
        devices = [p["name"] for p in q.cmd("qom-list", path="/machine/peripheral")]
        nodes = [n["node-name"] for n in q.cmd("query-named-block-nodes", flat=True)]
        qdevs = [b.get("qdev", "") for b in q.cmd("query-block")]
        return devices, nodes, qdevs
    finally:
        q.close()


def wait_record(record, names, timeout=10):
    """Until the VM's record lists exactly the attachments names as hot-plugged."""
    def hotplugged():
        return sorted(h["attachment"]
                      for h in json.loads(record.read_text()).get("hotplugged", []))
    wait(hotplugged, timeout, f"{record.name} listing {names}", until=lambda got: got == names)


def test_vmletd_killed_keeps_attachment_without_replugging(daemon):
    """vmletd SIGKILLed with an attachment Attached: the restarted vmletd re-adopts it
    from its record, checks it against QEMU and never plugs it again. Also the two crash
    windows: a device QEMU has but the record lacks is adopted (not plugged twice), and
    nodes left without a device are removed before the attach."""
    start_vm(daemon)
    blank_disk(daemon, "keep")
    extra = blank_disk(daemon, "extra")
    daemon.start()
    pid = daemon.wait_phase("web", "Running")["status"]["pid"]
    guest = Guest(daemon, "web")
    try:
        guest.expect("VMLET-BLOCK")
        vmlet(daemon, "attach", "web", "--disk", "keep", "--wait")
        assert guest.expect("VMLET-BLOCK-ADDED") == "VMLET-BLOCK-ADDED vdb"
        record = daemon.root / "state" / "vms" / "default.web.json"
        # Written just after Attached is reported (vm.c on_hot_changed).
        wait_record(record, ["web-keep"])

        daemon.kill(signal.SIGKILL)
        assert qemu_pids(daemon.root) == [pid]
        daemon.start()
        # Known from the record at once, confirmed against QEMU, never InProgress again.
        assert att(daemon, "web-keep")["status"]["phase"] == "Attached"
        guest.drain(3)
        assert att(daemon, "web-keep")["status"]["phase"] == "Attached"
        assert daemon.vm("web")["status"]["pid"] == pid
        daemon.kill(signal.SIGKILL)
        devices, nodes, qdevs = qemu_view(daemon)
        assert devices.count("vd-keep") == 1
        assert nodes.count("vd-keep-fmt") == 1 and nodes.count("vd-keep-file") == 1
        assert qdevs.count("/machine/peripheral/vd-keep/virtio-backend") == 1

        # Crash window 1: device_add done, record not saved. The device is adopted.
        rec = json.loads(record.read_text())
        del rec["hotplugged"]
        record.write_text(json.dumps(rec))
        # Crash window 2: blockdev-add done, device_add never sent, for a new attachment.
        # (vmletd gives a disk to QEMU's user before blockdev-add; so does this stand-in.)
        qemu_user = pwd.getpwnam("vmlet-qemu")
        os.chown(extra, qemu_user.pw_uid, qemu_user.pw_gid)
        os.chmod(extra, 0o600)
        q = QMP(str(daemon.root / "run" / "vms" / "default.web" / "qmp.sock"))
        q.cmd("blockdev-add", **{"driver": "file", "filename": str(extra),
                                 "node-name": "vd-extra-file"})
        q.cmd("blockdev-add", **{"driver": "qcow2", "file": "vd-extra-file",
                                 "node-name": "vd-extra-fmt"})
        q.close()
        (daemon.etc / "attachments.d" / "web-extra.json").write_text(
            json.dumps(manifest("web-extra", "web", "VirtualDisk", "extra")))
        daemon.start()
        wait_att(daemon, "web-keep", "Attached", 10)
        wait_att(daemon, "web-extra", "Attached", 30)
        assert guest.expect("VMLET-BLOCK-ADDED") == "VMLET-BLOCK-ADDED vdc"
        wait_record(record, ["web-extra", "web-keep"])
        guest.drain(2)
        # The guest never lost the first disk, and saw each disk arrive once.
        assert not [l for l in guest.con.lines if l.startswith("VMLET-BLOCK-REMOVED")]
        assert guest.count("VMLET-BLOCK-ADDED vdb") == 1
        assert guest.count("VMLET-BLOCK-ADDED vdc") == 1
        # Still fully managed after all that: a detach goes through.
        vmlet(daemon, "detach", "web", "--disk", "keep", "--wait")
        assert guest.expect("VMLET-BLOCK-REMOVED", 30) == "VMLET-BLOCK-REMOVED vdb"
    finally:
        guest.close()
    assert "QEMU refused" not in daemon.log.read_text()


def device_args(pid):
    argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
    return {json.loads(argv[i + 1])["id"]: json.loads(argv[i + 1])
            for i, a in enumerate(argv[:-1])
            if a == "-device" and argv[i + 1].startswith("{") and "\"id\"" in argv[i + 1]}


def test_vm_restart_brings_attachments_back_outside_boot_order(daemon):
    start_vm(daemon)
    blank_disk(daemon, "kept")
    iso_image(daemon, "media")
    daemon.start()
    pid = daemon.wait_phase("web", "Running")["status"]["pid"]
    guest = Guest(daemon, "web")
    try:
        guest.expect("VMLET-BLOCK")
        vmlet(daemon, "attach", "web", "--disk", "kept", "--wait")
        vmlet(daemon, "attach", "web", "--image", "media", "--wait")
        added = {guest.expect("VMLET-BLOCK-ADDED"), guest.expect("VMLET-BLOCK-ADDED")}
        assert added == {"VMLET-BLOCK-ADDED vdb", "VMLET-BLOCK-ADDED sr0"}
    finally:
        guest.close()
    before = device_args(pid)
    assert "vd-kept" not in before  # hot-plugged, not in the first argv

    status, _ = daemon.operate("web", "Restart", force=True)
    assert status == 201
    new_pid = daemon.wait_new_pid("web", pid, 60)["status"]["pid"]
    guest = Guest(daemon, "web")
    try:
        wait_att(daemon, "web-kept", "Attached", 30)
        wait_att(daemon, "web-media", "Attached", 30)
        # In the new argv, on the slots they had, and not bootable.
        args = device_args(new_pid)
        assert args["vd-kept"]["driver"] == "virtio-blk-pci" and "bootindex" not in args["vd-kept"]
        assert args["vi-media"]["driver"] == "scsi-cd" and "bootindex" not in args["vi-media"]
        assert args["vd-web-root"]["bootindex"] == 1
        # The guest booted from its root disk and has both devices from the start.
        line = guest.expect("VMLET-BLOCK", 60)
        assert set(line.split()[1:]) >= {"vda", "vdb", "sr0"}
    finally:
        guest.close()
    hot = [b for b in daemon.vm("web")["status"]["blockDeviceRefs"] if b["hotplugged"]]
    assert [(b["name"], b["attached"]) for b in hot] == [("kept", True), ("media", True)]
    assert len(qemu_pids(daemon.root)) == 1


def test_limits_conflicts_and_bad_input(daemon):
    """No guest needed: the 16-device limit, read-write conflicts across VMs, an immutable
    spec, a VM that does not exist, and drop-ins or requests that do not validate."""
    refs16 = [{"kind": "VirtualDisk", "name": f"d{i:02}"} for i in range(1, 17)]
    daemon.write_vm("full", runPolicy="AlwaysOff", blockDeviceRefs=refs16)
    daemon.write_vm("fifteen", runPolicy="AlwaysOff", blockDeviceRefs=refs16[:15])
    daemon.write_vm("owner", runPolicy="AlwaysOff",
                    blockDeviceRefs=[{"kind": "VirtualDisk", "name": "shared"}])
    for n in ("spare", "spare2", "shared"):
        blank_disk(daemon, n, create=False)
    daemon.start()
    daemon.wait_phase("full", "Stopped", 10)

    status, err = attach(daemon, "too-many", "full", "VirtualDisk", "spare")
    assert status == 409
    assert err["message"] == ('VirtualMachine "full" already has 16 block devices (16 in '
                              'spec.blockDeviceRefs, 0 attached); the limit is 16')
    status, _ = attach(daemon, "sixteenth", "fifteen", "VirtualDisk", "spare")
    assert status == 201
    a = wait_att(daemon, "sixteenth", "Pending", 10)
    assert attached_cond(a)["message"] == ('VirtualMachine "fifteen" is Stopped; the device is '
                                           'attached when it runs')
    status, err = attach(daemon, "seventeenth", "fifteen", "VirtualDisk", "spare2")
    assert status == 409 and "(15 in spec.blockDeviceRefs, 1 attached)" in err["message"]

    status, err = attach(daemon, "steal", "fifteen", "VirtualDisk", "shared")
    assert status == 409
    assert err["message"].startswith('VirtualDisk "shared" is attached read-write to '
                                     'VirtualMachine "owner" (its spec.blockDeviceRefs)')
    status, err = attach(daemon, "sixteenth", "fifteen", "VirtualDisk", "spare2")
    assert status == 409 and "its spec cannot change" in err["message"]

    status, _ = attach(daemon, "nowhere", "ghost", "VirtualDisk", "spare2")
    assert status == 201
    a = wait_att(daemon, "nowhere", "Pending", 10)
    assert attached_cond(a)["message"] == 'VirtualMachine "ghost" not found in namespace "default"'

    # Bad requests: every problem, with its JSON path, what was expected and found.
    bad = manifest("bad", "web", "VirtualDrive", "Blank_Disk")
    status, err = daemon.request("PUT", f"{VMBDA}/bad", bad)
    assert status == 422
    assert err["message"] == (
        "default/bad: spec.blockDeviceRef.kind: expected one of VirtualDisk, VirtualImage, "
        'ClusterVirtualImage, found "VirtualDrive"\n'
        "default/bad: spec.blockDeviceRef.name: expected a DNS-1123 label (1-63 characters of "
        "a-z, 0-9 and '-', starting and ending with a letter or digit), found \"Blank_Disk\"")
    # A broken drop-in is listed under its file name as Failed, with the same diagnostics.
    broken = daemon.etc / "attachments.d" / "broken.json"
    broken.write_text('{"apiVersion": "virtualization.deckhouse.io/v1alpha2", '
                      '"kind": "VirtualMachineBlockDeviceAttachment", "metadata": {"name": '
                      '"broken"}, "spec": {"virtualMachineName": "full"}}')
    a = wait_att(daemon, "broken", "Failed", 10)
    assert attached_cond(a) == {
        "type": "Attached", "status": "False", "reason": "InvalidSpec",
        "message": f"{broken}: spec.blockDeviceRef: expected an object, found nothing (the "
                   "field is required)"}
    r = vmlet(daemon, "validate", str(broken), check=False)
    assert r.returncode == 1 and "spec.blockDeviceRef: expected an object" in r.stderr
    status, _ = daemon.request("DELETE", f"{VMBDA}/broken")
    assert status == 200
    wait_att(daemon, "broken", None, 10)

    table = vmlet(daemon, "get", "vmbda").stdout.splitlines()
    assert [row.split()[:3] for row in table[1:]] == [
        ["nowhere", "Pending", "ghost"], ["sixteenth", "Pending", "fifteen"]]
    assert qemu_pids(daemon.root) == []
