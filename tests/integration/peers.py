"""Several vmletd nodes on one machine, as migration peers: each in a network namespace of
its own (veth to a bridge in a hub namespace, 10.77.0.0/24), with its own certificates
(certtool) and peers.d. Nothing is added to the machine's own network namespace."""
import contextlib
import json
import pathlib
import subprocess
import uuid

from daemon import API, Daemon

SUBNET = "10.77.0"


def run(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Pki:
    """A CA and, per node, server and client certificates in QEMU's x509 layout."""

    def __init__(self, root, name="vmlet test CA"):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.key = self.root / "ca-key.pem"
        self.cert = self.root / "ca-cert.pem"
        tmpl = self.root / "ca.info"
        tmpl.write_text(f"cn = {name}\nca\ncert_signing_key\nexpiration_days = 30\n")
        run("certtool", "--generate-privkey", "--outfile", str(self.key))
        run("certtool", "--generate-self-signed", "--load-privkey", str(self.key),
            "--template", str(tmpl), "--outfile", str(self.cert))

    def issue(self, out_dir, cn, address, kind, dns=None):
        """kind: "server" or "client"; the certificate names cn (and dns, if given)."""
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmpl = out / f"{kind}.info"
        names = f"dns_name = {dns or cn}\n"
        purpose = "tls_www_server" if kind == "server" else "tls_www_client"
        tmpl.write_text(f"organization = vmlet\ncn = {cn}\n{names}ip_address = {address}\n"
                        f"{purpose}\nencryption_key\nsigning_key\nexpiration_days = 30\n")
        key, cert = out / f"{kind}-key.pem", out / f"{kind}-cert.pem"
        run("certtool", "--generate-privkey", "--outfile", str(key))
        run("certtool", "--generate-certificate", "--load-privkey", str(key),
            "--load-ca-certificate", str(self.cert), "--load-ca-privkey", str(self.key),
            "--template", str(tmpl), "--outfile", str(cert))
        key.chmod(0o600)
        tmpl.unlink()

    def node_dir(self, out_dir, name, address):
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ca-cert.pem").write_text(self.cert.read_text())
        self.issue(out, name, address, "server")
        self.issue(out, name, address, "client")
        return out


class Network:
    """The hub namespace and its bridge; nodes plug a veth into it."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self.hub = f"vmlet-hub-{self.tag}"
        run("ip", "netns", "add", self.hub)
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")
        self.namespaces = [self.hub]

    def add(self, index):
        ns = f"vmlet-n{index}-{self.tag}"
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        host, peer = f"vh{index}{self.tag}"[:15], f"vp{index}{self.tag}"[:15]
        run("ip", "link", "add", host, "netns", self.hub, "type", "veth", "peer", "name", peer,
            "netns", ns)
        run("ip", "-n", self.hub, "link", "set", host, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{SUBNET}.{index}/24", "dev", peer)
        run("ip", "-n", ns, "link", "set", peer, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns, f"{SUBNET}.{index}", peer

    def cut(self, ns, dev):
        run("ip", "-n", ns, "link", "set", dev, "down")

    def mend(self, ns, dev):
        run("ip", "-n", ns, "link", "set", dev, "up")

    def close(self):
        for ns in reversed(self.namespaces):
            run("ip", "netns", "delete", ns, check=False)


class Node(Daemon):
    """A vmletd in its own namespace, with [migration] and its peers."""

    def __init__(self, guest_iso, net, pki, index, extra_conf="", migration_conf=""):
        """extra_conf goes into vmlet.conf before the [migration] group, migration_conf
        into it."""
        self.name = f"hv-{index}"
        self.index = index
        self.netns, self.address, self.dev = net.add(index)
        super().__init__(guest_iso, extra_conf=extra_conf)
        self.certs = pki.node_dir(self.root / "pki", self.name, self.address)
        text = self.conf.read_text().replace("name=test-node", f"name={self.name}")
        text += (f"[migration]\nlisten-address={self.address}\nport=7443\n"
                 f"cert-dir={self.certs}\nstream-ports=49152-49161\n{migration_conf}")
        self.conf.write_text(text)
        (self.etc / "peers.d").mkdir(exist_ok=True)

    def add_peer(self, other, name=None):
        (self.etc / "peers.d" / f"{name or other.name}.json").write_text(json.dumps(
            {"name": name or other.name, "address": other.address}))

    def start(self, wrapper=(), env=None):
        # nsenter, not `ip netns exec`: that one also remounts /sys, hiding the cgroup
        # hierarchies vmletd places QEMU in.
        return super().start(wrapper=("nsenter", f"--net=/run/netns/{self.netns}", *wrapper),
                             env=env)

    # ---- migrations, as a test drives them ----

    def migrate(self, name, op="Evict", to=None):
        """Creates an Evict (or Migrate, to a node by name) operation; returns its name."""
        spec = {"virtualMachineName": name, "type": op}
        if to:
            spec["migrate"] = {"nodeSelector": {"kubernetes.io/hostname": to}}
        status, body = self.request("POST", f"{API}/namespaces/default/virtualmachineoperations",
                                    {"apiVersion": "virtualization.deckhouse.io/v1alpha2",
                                     "kind": "VirtualMachineOperation", "spec": spec})
        assert status == 201, body
        return body["metadata"]["name"]

    def op(self, name):
        status, body = self.request(
            "GET", f"{API}/namespaces/default/virtualmachineoperations/{name}")
        return body if status == 200 else None

    def wait_op(self, name, phases=("Completed", "Failed"), timeout=120):
        return self.wait_for(lambda: self.op(name), timeout, f"{self.name}: op {name} ends",
                             until=lambda o: o and o["status"]["phase"] in phases)

    def wait_progress(self, name, at_least, timeout=60):
        """The operation's progress reached at_least percent (10: copying has begun)."""
        def progress(o):
            return o and int(o["status"].get("progress", "0%").rstrip("%")) >= at_least
        return self.wait_for(lambda: self.op(name), timeout,
                             f"{self.name}: op {name} at {at_least}%", interval=0.05,
                             until=progress)

    def journals(self):
        """{migration id: journal} of this node's state directory."""
        d = self.root / "state" / "migrations"
        return {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")} if d.is_dir() else {}

    def console(self, name):
        from vmrun import Console
        return Console(str(self.root / "run" / "vms" / f"default.{name}" / "console.sock"))

    def disk_path(self, disk):
        return self.root / "state" / "disks" / "default" / f"{disk}.qcow2"

    def in_netns(self, *argv, **kw):
        """Runs argv in this node's network namespace."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                              capture_output=True, text=True, **kw)


@contextlib.contextmanager
def peer_nodes(guest_iso, pki_dir, count=2, migration_conf="", before_start=None):
    """count nodes hv-1, hv-2, ... on one network, each every other's peer, started (after
    before_start(nodes), when given, has adjusted them); all stopped and the namespaces
    deleted at the end."""
    net = Network()
    pki = Pki(pki_dir)
    nodes = [Node(guest_iso, net, pki, i + 1, migration_conf=migration_conf)
             for i in range(count)]
    for n in nodes:
        for other in nodes:
            if other is not n:
                n.add_peer(other)
    if before_start:
        before_start(nodes)
    try:
        for n in nodes:
            n.start()
        yield nodes
    finally:
        for n in nodes:
            n.stop()
        net.close()
