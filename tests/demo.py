"""vmletd on a scratch node running the DVP guide's linux-vm, as a new user would try it.

Starts vmletd with a scratch vmlet.conf, applies tests/seed/linux-vm.yaml (the guide's
first example, verbatim; the tiny test guest stands in for its Ubuntu disk), shows
`vmlet get` with the VM Running and the guest's serial console (it prints the cloud-init
user-data it received), stops the VM through the ACPI button and cleans everything up.
"""
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SOURCE = pathlib.Path(__file__).resolve().parents[1]
BUILD = SOURCE / "build"
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from daemon import remove_cgroups  # noqa: E402
from vmrun import Console  # noqa: E402
from waiting import wait  # noqa: E402

T0 = time.monotonic()


def say(text=""):
    print(f"[{time.monotonic() - T0:5.1f}s] {text}" if text else "", flush=True)


def vmlet(conf, *args, show=True):
    if show:
        say(f"$ vmlet {' '.join(args)}")
    r = subprocess.run([str(BUILD / "agent" / "vmlet"), *args, "-c", str(conf)],
                       capture_output=True, text=True)
    if show:
        for line in (r.stdout + r.stderr).splitlines():
            print(f"         {line}")
    if r.returncode != 0:
        raise RuntimeError(f"vmlet {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def phase(conf):
    out = vmlet(conf, "get", "linux-vm", "-o", "jsonpath={.status.phase}", show=False)
    return out.strip()


def wait_phase(conf, want, timeout):
    wait(lambda: phase(conf), timeout, f"linux-vm phase {want}", 0.1,
         until=lambda p: p == want)


def main(guest_dir):
    root = pathlib.Path(tempfile.mkdtemp(prefix="vmlet-demo-", dir="/tmp"))
    root.chmod(0o711)  # QEMU runs as vmlet-qemu: it passes through to its VM's files
    etc = root / "etc"
    for d in ("vms.d", "disks.d", "images.d", "classes.d", "secrets.d"):
        (etc / d).mkdir(parents=True)
    conf = root / "vmlet.conf"
    conf.write_text(f"[node]\nname=demo-node\n[paths]\nrun-dir={root}/run\n"
                    f"state-dir={root}/state\nconfig-dir={etc}\n"
                    f"profiles-dir={SOURCE}/qemu-profiles\n"
                    # below the demo's own cgroups: a scratch node leaves the host's alone
                    f"[resources]\ncgroup-parent=vmlet-demo-{root.name}\n")
    say(f"scratch node {root} (vmlet.conf, drop-ins, state); every vmlet below runs with "
        f"-c {conf}")

    # The guide's VM boots from VirtualDisk linux-vm-root: here the test guest's image.
    disk = root / "state" / "disks" / "default" / "linux-vm-root.qcow2"
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(guest_dir / "guest.iso"),
                    str(disk)], check=True)
    (etc / "disks.d" / "linux-vm-root.json").write_text(
        '{"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",'
        ' "metadata": {"name": "linux-vm-root"}}\n')
    say(f"VirtualDisk linux-vm-root: {disk} (the test guest standing in for Ubuntu)")

    say(f"$ vmletd -c {conf} &")
    log = open(root / "vmletd.log", "wb")
    daemon = subprocess.Popen([str(BUILD / "agent" / "vmletd"), "-c", str(conf)],
                              stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    console = None
    try:
        def get():
            r = subprocess.run([str(BUILD / "agent" / "vmlet"), "get", "-c", str(conf)],
                               capture_output=True, text=True)
            if r.returncode != 0 and daemon.poll() is not None:
                raise RuntimeError((root / "vmletd.log").read_text())
            return r
        wait(get, 20, "vmletd answering vmlet get", until=lambda r: r.returncode == 0)

        vmlet(conf, "apply", "-f", str(SOURCE / "tests" / "seed" / "linux-vm.yaml"))
        wait_phase(conf, "Running", 60)
        vmlet(conf, "get")
        # Serial output with nobody attached is dropped: attach before the guest boots.
        console = Console(str(root / "run" / "vms" / "default.linux-vm" / "console.sock"),
                          echo=lambda line: say(f"console: {line}") if line.strip() else None)
        console.wait_for("VMLET-GUEST-BOOT-OK", 90)
        console.wait_for("VMLET-CIDATA-OK", 30)
        console.wait_for("VMLET-TICK", 30)
        vmlet(conf, "get", "linux-vm", "-o", "wide")

        vmlet(conf, "stop", "linux-vm")
        console.wait_for("VMLET-ACPI-POWERDOWN", 60)
        wait_phase(conf, "Stopped", 60)
        console.echo = None
        vmlet(conf, "get")
    finally:
        if console:
            console.close()
        # vmletd never stops VMs when it exits: after a failure, stop the VM first.
        try:
            if phase(conf) not in ("Stopped", "Pending"):
                vmlet(conf, "stop", "linux-vm", "--force", show=False)
                wait_phase(conf, "Stopped", 30)
        except (RuntimeError, AssertionError) as e:
            say(f"cleanup: {e}")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        remove_cgroups(f"vmlet-demo-{root.name}")
        shutil.rmtree(root, ignore_errors=True)
    say("done: vmletd stopped, scratch node removed")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
