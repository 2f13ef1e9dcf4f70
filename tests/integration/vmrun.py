"""Run a VM from `vmlet render` output on a scratch node and watch its serial console.

Shared by the boot tests and by tests/demo.sh. Everything lives under one scratch
directory: node config, drop-ins, disks, run dir. Only the cidata ISO is still made here
with xorriso, until the in-process builder lands (the provisioning issue).
"""
import json
import pathlib
import select
import subprocess

from qmp import Qemu, connect_unix
from waiting import wait

SOURCE = pathlib.Path(__file__).resolve().parents[2]


class Node:
    """A scratch node: vmlet.conf, drop-in dirs and state under root."""

    def __init__(self, root, vmlet):
        self.root = pathlib.Path(root)
        self.vmlet = str(vmlet)
        self.config_dir = self.root / "etc"
        for d in ("disks.d", "images.d", "classes.d"):
            (self.config_dir / d).mkdir(parents=True, exist_ok=True)
        self.conf = self.root / "vmlet.conf"
        self.conf.write_text(
            "[node]\nname=demo-node\n"
            f"[paths]\nrun-dir={self.root}/run\nstate-dir={self.root}/state\n"
            f"config-dir={self.config_dir}\nprofiles-dir={SOURCE}/qemu-profiles\n"
            "[qemu]\naccel=auto\n")

    def add_dropin(self, subdir, obj):
        path = self.config_dir / subdir / f"{obj['metadata']['name']}.json"
        path.write_text(json.dumps(obj, indent=2))
        return path

    def render(self, vm_path):
        r = subprocess.run([self.vmlet, "render", "-c", str(self.conf), str(vm_path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"vmlet render failed: {r.stderr}")
        return r.stdout.splitlines(), r.stderr


def make_cidata(path, user_data, meta_data):
    src = pathlib.Path(str(path) + ".d")
    src.mkdir(parents=True, exist_ok=True)
    (src / "user-data").write_text(user_data)
    (src / "meta-data").write_text(meta_data)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r",
                    "-o", str(path), str(src)], check=True, capture_output=True)


def socket_path(argv, chardev_id):
    arg = next(a for a in argv if f"id={chardev_id}," in a)
    return arg.split("path=")[1].split(",")[0]


class Console:
    """Reads the serial console unix socket line by line, keeping everything seen."""

    def __init__(self, path, timeout=10.0, echo=None):
        self.echo = echo  # called once with each new line, e.g. to show it live
        self.sock = connect_unix(path, timeout)
        self.buf = b""
        self.lines = []

    def _pump(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace").rstrip("\r")
            self.lines.append(text)
            if self.echo:
                self.echo(text)
        return True

    def wait_for(self, marker, timeout, start=0):
        """Returns the first line starting with marker (from line index start on: see
        len(lines) for "after what was seen so far"); reads the console meanwhile."""
        seen = start

        def found():
            nonlocal seen
            for line in self.lines[seen:]:
                seen += 1
                if line.startswith(marker):
                    return line
        try:
            return wait(found, timeout, f"console line {marker!r}", 0.5, sleep=self._pump)
        except AssertionError as e:
            e.args = (f"{e}; last lines: {self.lines[-10:]}",)
            raise

    def section(self, begin, end):
        """Lines strictly between the begin and end markers (already received)."""
        i = self.lines.index(begin)
        j = self.lines.index(end, i)
        return self.lines[i + 1:j]

    def close(self):
        self.sock.close()


def start(argv, log_path, echo=None):
    """Starts QEMU paused (-S is in the rendered line), attaches the console, then cont."""
    qmp_sock = socket_path(argv, "charmonitor")
    pathlib.Path(qmp_sock).parent.mkdir(parents=True, exist_ok=True)
    qemu = Qemu(argv, qmp_sock, log_path)
    console = Console(socket_path(argv, "charserial0"), echo=echo)
    qemu.qmp.cmd("cont")
    return qemu, console


def uptime(tick):
    """The guest's uptime in seconds from one of its `VMLET-TICK ... uptime=S` lines."""
    return float(tick.split("uptime=")[1])
