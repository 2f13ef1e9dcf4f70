"""The guide's live migration ("Миграция виртуальной машины в реальном времени") as a new
user would try it: two scratch nodes, hv-1 and hv-2, each a vmletd in a network namespace of
its own (a veth each to a bridge in a third; nothing is added to the host's namespaces),
with certificates made on the spot (certtool) and each other in peers.d. The seed's
linux-vm is applied on hv-1; `vmlet get -w` on hv-1 shows Running hv-1 → Migrating hv-1 →
Running hv-2 while `vmlet evict linux-vm --wait` moves it; on hv-2 the guest's uptime goes
on, with no second boot. Then everything is removed.

main() returns what it saw, for tests/integration/test_demo_migration.py.
"""
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
from conftest import vmlet_binary  # noqa: E402
from peers import peer_nodes  # noqa: E402
from vmrun import uptime  # noqa: E402

T0 = time.monotonic()


def say(text=""):
    print(f"[{time.monotonic() - T0:5.1f}s] {text}" if text else "", flush=True)


def vmlet(node, *args):
    say(f"{node.name}$ vmlet {' '.join(args)}")
    r = subprocess.run([str(vmlet_binary()), *args, "-c", str(node.conf)],
                       capture_output=True, text=True)
    for line in (r.stdout + r.stderr).splitlines():
        print(f"         {line}", flush=True)
    if r.returncode != 0:
        raise RuntimeError(f"vmlet {' '.join(args)} on {node.name} failed: {r.stderr}")
    return r.stdout


class WatchRows:
    """`vmlet get -w` on a node, its rows printed and kept as they come."""

    def __init__(self, node):
        say(f"{node.name}$ vmlet get -w &")
        self.rows = []
        self.proc = subprocess.Popen([str(vmlet_binary()), "get", "-w", "-c", str(node.conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.rows.append(line)
            print(f"   get -w {line}", flush=True)

    def wait_for(self, text, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in r for r in self.rows):
                return
            time.sleep(0.1)
        raise RuntimeError(f"`vmlet get -w` showed no row with {text!r}: {self.rows}")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.thread.join(timeout=10)


def evict(a, b, seen):
    watch = con = None
    try:
        # The guide's VM boots from VirtualDisk linux-vm-root: the test guest's image here.
        a.guest_disk("linux-vm-root")
        vmlet(a, "apply", "-f", str(SOURCE / "tests" / "seed" / "linux-vm.yaml"))
        a.wait_phase("linux-vm", "Running", 60)
        con = a.console("linux-vm")
        before = uptime(con.wait_for("VMLET-TICK", 120))
        say(f"hv-1 console: the guest is up, uptime {before:.1f} s")
        con.close()
        con = None

        watch = WatchRows(a)
        watch.wait_for("Running", 10)
        vmlet(a, "evict", "linux-vm", "--wait")
        watch.wait_for("hv-2", 30)
        watch.close()
        seen["rows"] = list(watch.rows)
        watch = None
        seen["hv-2"] = vmlet(b, "get")
        seen["hv-1"] = vmlet(a, "get")

        con = b.console("linux-vm")
        after = uptime(con.wait_for("VMLET-TICK", 30))
        seen["uptimes"] = (before, after)
        seen["rebooted"] = any(line.startswith("VMLET-GUEST-BOOT-OK") for line in con.lines)
        say(f"hv-2 console: uptime {after:.1f} s, the same guest"
            + (" (it booted again!)" if seen["rebooted"] else ", never rebooted"))
        con.close()
        con = None
        vmlet(b, "stop", "linux-vm", "--force")
        b.wait_phase("linux-vm", "Stopped", 60)
    finally:
        if watch:
            watch.close()
        if con:
            con.close()


def main(guest_dir):
    guest_iso = pathlib.Path(guest_dir) / "guest.iso"
    pki_dir = tempfile.mkdtemp(prefix="vmlet-demo-pki-", dir="/tmp")
    seen = {}
    try:
        with peer_nodes(guest_iso, pki_dir) as (a, b):
            say(f"hv-1 at {a.address} ({a.root}), hv-2 at {b.address} ({b.root}): vmletd "
                "each in its own network namespace, peers of each other over mutually "
                "authenticated TLS")
            evict(a, b, seen)
    finally:
        shutil.rmtree(pki_dir, ignore_errors=True)
    say("done: both nodes stopped and removed, namespaces deleted")
    return seen


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
