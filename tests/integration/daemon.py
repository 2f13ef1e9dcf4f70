"""A vmletd on a scratch node, driven through its HTTP API on the unix socket."""
import http.client
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

from conftest import BUILD
from waiting import wait

API = "/apis/virtualization.deckhouse.io/v1alpha2"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def own_cgroups():
    """{controller: path} of this process's cgroups (vmletd, its child, shares them)."""
    out = {}
    for line in pathlib.Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            out[c] = path
    return out


def remove_cgroups(parent):
    """Removes the VMs' cgroups below parent (relative to this process's own cgroup in
    each v1 hierarchy) once their processes are gone, then parent itself."""
    for controller, own in own_cgroups().items():
        base = pathlib.Path("/sys/fs/cgroup") / controller / own.lstrip("/") / parent
        if not base.is_dir():
            continue
        dirs = [d for d in sorted(base.glob("*"), reverse=True) if d.is_dir()] + [base]

        def left():
            for d in dirs:
                try:
                    d.rmdir()
                except OSError:
                    pass
            return [d for d in dirs if d.is_dir()]
        try:
            wait(left, 10, f"cgroups removed below {base}", until=lambda busy: not busy)
        except AssertionError:
            pass  # best effort, as ever: a group still busy after 10 s stays behind


class Seen(dict):
    """A VM as read by a wait: shown in its failure by status alone (the test wrote the
    spec)."""

    def __repr__(self):
        return f"status {self.get('status')!r}"


class Daemon:
    def __init__(self, guest_iso, extra_conf=""):
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="vd", dir="/tmp"))
        # QEMU runs as vmlet-qemu: it must be able to pass through the node's directories.
        self.root.chmod(0o711)
        # The VMs' cgroups nest below the test's own (the sandbox's memory cgroup included).
        self.cgroup_parent = f"vmlet-test-{self.root.name}"
        self.etc = self.root / "etc"
        for d in ("vms.d", "disks.d", "images.d", "classes.d", "secrets.d"):
            (self.etc / d).mkdir(parents=True)
        self.conf = self.root / "vmlet.conf"
        self.conf.write_text(f"[node]\nname=test-node\nlabels=disktype=ssd\n"
                             f"[paths]\nrun-dir={self.root}/run\nstate-dir={self.root}/state\n"
                             f"config-dir={self.etc}\n[qemu]\naccel=tcg\n"
                             f"[resources]\ncgroup-parent={self.cgroup_parent}\n{extra_conf}")
        self.socket = str(self.root / "run" / "vmletd.sock")
        self.guest_iso = guest_iso
        self.proc = None
        self.log = self.root / "vmletd.log"

    def start(self, wrapper=(), env=None):
        """Starts vmletd (under wrapper, e.g. setpriv, when given) and waits for its API."""
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([*wrapper, str(BUILD / "agent" / "vmletd"),
                                      "-c", str(self.conf)],
                                     stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                     env=env)
        # Wait for an answer, not for the file: a killed vmletd leaves its socket behind.
        def answers():
            assert self.proc.poll() is None, self.log.read_text()
            return self.request("GET", "/healthz")[0] == 200
        wait(answers, 20, "vmletd answering on its socket", ignore=(OSError,))
        return self

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def stop(self):
        hung = None
        if self.proc and self.proc.poll() is None:
            try:
                self.kill(signal.SIGTERM)
            except subprocess.TimeoutExpired:
                # Cleaned up all the same, then reported: vmletd must obey SIGTERM.
                self.proc.kill()
                self.proc.wait(timeout=30)
                hung = self.log.read_text()[-3000:]
        # The agent never stops VMs when it exits; tests clean theirs up.
        subprocess.run(["pkill", "-9", "-f", f"path={self.root}/"], check=False)
        remove_cgroups(self.cgroup_parent)
        if hung is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            raise AssertionError(f"vmletd did not exit within 30 s of SIGTERM; log:\n{hung}")
        shutil.rmtree(self.root, ignore_errors=True)

    def request(self, method, path, body=None):
        conn = UnixHTTPConnection(self.socket)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        return resp.status, json.loads(payload) if payload else None

    def vm(self, name, ns="default"):
        status, body = self.request("GET", f"{API}/namespaces/{ns}/virtualmachines/{name}")
        return body if status == 200 else None

    def wait_for(self, probe, timeout, what, interval=0.1, until=None):
        """wait() with the tail of vmletd's log in its failure."""
        try:
            return wait(probe, timeout, what, interval, until=until)
        except AssertionError as e:
            e.args = (f"{e}\nvmletd log, last 3000 characters:\n{self.log.read_text()[-3000:]}",)
            raise

    def wait_vm(self, name, timeout, what, interval=0.1, until=None):
        """The VM (None if there is none) once until(vm) holds; a failure shows its status."""
        def seen():
            vm = self.vm(name)
            return vm and Seen(vm)
        return self.wait_for(seen, timeout, f"vm {name} {what}", interval, until)

    def wait_phase(self, name, phase, timeout=60):
        return self.wait_vm(name, timeout, f"phase {phase}",
                            until=lambda vm: vm and vm["status"]["phase"] == phase)

    def wait_new_pid(self, name, old, timeout=60):
        """The VM once it is Running again as another QEMU than pid old."""
        return self.wait_vm(name, timeout, f"Running as another QEMU than pid {old}",
                            until=lambda vm: vm["status"]["phase"] == "Running"
                            and vm["status"].get("pid") not in (None, old))

    def operate(self, name, op, force=False):
        return self.request("POST", f"{API}/namespaces/default/virtualmachineoperations",
                            {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                             "kind": "VirtualMachineOperation",
                             "spec": {"virtualMachineName": name, "type": op, "force": force}})

    def guest_disk(self, name):
        path = self.root / "state" / "disks" / "default" / f"{name}.qcow2"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(self.guest_iso),
                        str(path)], check=True)
        (self.etc / "disks.d" / f"{name}.json").write_text(json.dumps({
            "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
            "metadata": {"name": name}}))

    def write_vm(self, name, **spec):
        body = {"virtualMachineClassName": "host", "cpu": {"cores": 1},
                "memory": {"size": "256Mi"}, "terminationGracePeriodSeconds": 20,
                "blockDeviceRefs": [{"kind": "VirtualDisk", "name": f"{name}-root"}]}
        body.update(spec)
        path = self.etc / "vms.d" / f"{name}.json"
        path.write_text(json.dumps({"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                                    "kind": "VirtualMachine", "metadata": {"name": name},
                                    "spec": body}))
        return path


class Watch:
    """GET ...?watch=true in a thread: every event vmletd streams, in order, in .events."""

    def __init__(self, daemon):
        self.events = []
        self.conn = UnixHTTPConnection(daemon.socket, timeout=None)
        self.conn.request("GET", f"{API}/namespaces/default/virtualmachines?watch=true")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while line := self.resp.readline():
                self.events.append(json.loads(line))
        except Exception:  # noqa: BLE001 - close() ends the stream mid-read, by design
            pass

    def phases(self, name):
        """(event type, phase) for each event about the VM name, in order."""
        return [(e["type"], e["object"].get("status", {}).get("phase"))
                for e in list(self.events) if e["object"]["metadata"]["name"] == name]

    def close(self):
        self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.thread.join(10)


def qemu_pids(root):
    r = subprocess.run(["pgrep", "-f", f"path={root}/"], capture_output=True, text=True)
    return sorted(int(p) for p in r.stdout.split())
