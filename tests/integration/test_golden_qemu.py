"""Every golden command line, run by real QEMU (TCG).

For each tests/golden/NAME.args, QEMU is started with exactly that argv (paths under
/run/vmlet, /var/lib/vmlet and /srv moved into a temporary directory, the files the
blockdevs name created), paused by -S, and inspected over QMP. The expectations come from
the spec JSON (NAME.json and the fixture drop-ins), not from the argv, so a builder bug
that QEMU happily accepts still fails here: wrong boot order, a writable image, a missing
hotplug slot, a wrong CPU count or memory size.
"""
import json
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import GOLDEN
from qmp import Qemu, read_log

MiB = 1024 * 1024
KIND_PREFIX = {"VirtualDisk": "vd", "VirtualImage": "vi", "ClusterVirtualImage": "cvi"}
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def quantity(q):
    if isinstance(q, int):
        return q
    for suffix, mult in sorted(UNITS.items(), key=lambda kv: -len(kv[0])):
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * mult)
    return int(q)


def load_objects(path):
    doc = json.loads(path.read_text())
    return doc["items"] if doc.get("kind") == "List" else [doc]


def fixture_objects(extra):
    objs = {}
    for d in ("disks.d", "images.d"):
        for f in sorted((GOLDEN / "node" / d).glob("*.json")):
            for o in load_objects(f):
                objs[(o["kind"], o["metadata"]["name"])] = o
    for o in extra:
        objs[(o["kind"], o["metadata"]["name"])] = o
    return objs


def image_format(obj):
    local = obj.get("spec", {}).get("local", {})
    if "format" in local:
        return local["format"]
    if obj.get("status", {}).get("format"):
        return obj["status"]["format"]
    path = local.get("path", "")
    for ext, fmt in ((".iso", "iso"), (".qcow2", "qcow2"), (".img", "raw"), (".raw", "raw")):
        if path.endswith(ext):
            return fmt
    return "qcow2"


def cases():
    out = []
    for args in sorted(GOLDEN.glob("*.args")):
        out.append(pytest.param(args.stem, id=args.stem))
    return out


def prepare_files(argv, root):
    """Creates every file a -blockdev names, of the right kind for how it is used."""
    blockdevs = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-blockdev"]
    devices = [json.loads(argv[i + 1]) for i, a in enumerate(argv)
               if a == "-device" and argv[i + 1].startswith("{")]
    by_node = {b["node-name"]: b for b in blockdevs}
    cd_nodes = {d["drive"] for d in devices if d.get("driver") == "ide-cd"}
    for b in blockdevs:
        if "filename" not in b:
            continue
        path = pathlib.Path(b["filename"])
        if not str(path).startswith(str(root)) or path.exists():
            continue  # firmware and other host files are used as they are
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = next((f for f in blockdevs if f.get("file") == b["node-name"]), None)
        if b["node-name"] == "ovmf-vars-file":
            code = by_node["ovmf-code-file"]["filename"]
            template = ("/usr/share/OVMF/OVMF_VARS_4M.ms.fd" if "secboot" in code
                        else "/usr/share/OVMF/OVMF_VARS_4M.fd")
            shutil.copy(template, path)
        elif fmt and fmt["node-name"] in cd_nodes:
            src = root / "isosrc"
            src.mkdir(exist_ok=True)
            (src / "hello.txt").write_text("vmlet\n")
            subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "TEST", "-o", str(path),
                            str(src)], check=True, capture_output=True)
        elif fmt and fmt["driver"] == "qcow2":
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"],
                           check=True)
        else:
            with open(path, "wb") as f:
                f.truncate(16 * MiB)


@pytest.fixture
def scratch():
    # Short paths: unix socket paths must stay under 108 bytes.
    d = pathlib.Path(tempfile.mkdtemp(prefix="vg", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def loop_device(scratch):
    devices = []

    def make():
        backing = scratch / "loop-backing.img"
        with open(backing, "wb") as f:
            f.truncate(16 * MiB)
        r = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            pytest.skip(f"no loop device for the host_device case: {r.stderr.strip()}")
        devices.append(r.stdout.strip())
        return devices[-1]

    yield make
    for dev in devices:
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.mark.parametrize("name", cases())
def test_qemu_runs_golden_line(name, scratch, loop_device, qemu_available):
    text = (GOLDEN / f"{name}.args").read_text()
    lines = [l for l in text.splitlines() if not l.startswith("# warning: ")]
    host_dev = None
    if any("/dev/vmlet-test/" in l for l in lines):
        host_dev = loop_device()
    argv = []
    for l in lines:
        l = (l.replace("/run/vmlet/", f"{scratch}/run/")
              .replace("/var/lib/vmlet/", f"{scratch}/state/")
              .replace("/srv/", f"{scratch}/srv/"))
        if host_dev:
            l = l.replace("/dev/vmlet-test/host-disk", host_dev)
        argv.append(l)
    prepare_files(argv, scratch)
    qmp_sock = next(a.split("path=")[1].split(",")[0] for a in argv if "id=charmonitor" in a)
    pathlib.Path(qmp_sock).parent.mkdir(parents=True, exist_ok=True)

    objs = load_objects(GOLDEN / f"{name}.json")
    vm = next(o for o in objs if o["kind"] == "VirtualMachine")
    spec = vm["spec"]
    known = fixture_objects(o for o in objs if o["kind"] != "VirtualMachine")

    qemu = Qemu(argv, qmp_sock, scratch / "qemu.log")
    try:
        q = qemu.qmp
        assert q.cmd("query-status")["status"] == "prelaunch"  # -S: nothing runs before cont

        # QEMU's own seccomp sandbox is active.
        status = pathlib.Path(f"/proc/{qemu.proc.pid}/status").read_text()
        assert "Seccomp:\t2" in status

        # CPUs and topology as DVP lays them out.
        cores = spec["cpu"]["cores"]
        sockets = 1 if cores <= 16 else 2 if cores <= 32 else 4 if cores <= 64 else 8
        cpus = q.cmd("query-cpus-fast")
        assert len(cpus) == cores
        assert len({c["props"]["socket-id"] for c in cpus}) == sockets

        # Memory: the spec size rounded up to whole MiB.
        want_mem = -(-quantity(spec["memory"]["size"]) // MiB) * MiB
        assert q.cmd("query-memory-size-summary")["base-memory"] == want_mem

        # Each blockDeviceRef: present, read-only unless a VirtualDisk, a CD-ROM if ISO,
        # and boot index = position in the list.
        blocks = {b.get("qdev", "").split("/")[-1] if "virtio-backend" not in b.get("qdev", "")
                  else b["qdev"].split("/")[-2]: b for b in q.cmd("query-block")}
        for i, ref in enumerate(spec["blockDeviceRefs"]):
            dev_id = f"{KIND_PREFIX[ref['kind']]}-{ref['name']}"
            obj = known[(ref["kind"], ref["name"])]
            assert dev_id in blocks, f"{dev_id} not in {sorted(blocks)}"
            inserted = blocks[dev_id]["inserted"]
            assert inserted["ro"] == (ref["kind"] != "VirtualDisk"), dev_id
            dev_type = q.cmd("qom-get", path=f"/machine/peripheral/{dev_id}", property="type")
            if image_format(obj) == "iso":
                assert dev_type == "ide-cd"
            elif spec.get("enableParavirtualization", True):
                assert dev_type == "virtio-blk-pci"
            else:
                assert dev_type == "ide-hd"
            boot = q.cmd("qom-get", path=f"/machine/peripheral/{dev_id}", property="bootindex")
            assert boot == i + 1, f"{dev_id}: bootindex {boot}, expected {i + 1}"

        # VirtualMachineBlockDeviceAttachments of this VM come back at a start as they were
        # hot-plugged: present, read-only unless a VirtualDisk, ISO images as scsi-cd, never
        # in the boot order. One naming a device of blockDeviceRefs is left out.
        in_refs = {(r["kind"], r["name"]) for r in spec["blockDeviceRefs"]}
        hot = {}
        for a in objs:
            if (a["kind"] != "VirtualMachineBlockDeviceAttachment"
                    or a["spec"]["virtualMachineName"] != vm["metadata"]["name"]):
                continue
            ref = a["spec"]["blockDeviceRef"]
            if (ref["kind"], ref["name"]) not in in_refs:
                hot[(ref["kind"], ref["name"])] = known[(ref["kind"], ref["name"])]
        hot_virtio = 0
        for (kind, name), obj in hot.items():
            dev_id = f"{KIND_PREFIX[kind]}-{name}"
            assert dev_id in blocks, f"{dev_id} not in {sorted(blocks)}"
            assert blocks[dev_id]["inserted"]["ro"] == (kind != "VirtualDisk"), dev_id
            dev_type = q.cmd("qom-get", path=f"/machine/peripheral/{dev_id}", property="type")
            iso = image_format(obj) == "iso"
            assert dev_type == ("scsi-cd" if iso else "virtio-blk-pci"), dev_id
            hot_virtio += not iso
            assert q.cmd("qom-get", path=f"/machine/peripheral/{dev_id}",
                         property="bootindex") == -1, dev_id

        # The provisioning ISO: a read-only CD-ROM outside the boot order.
        prov = spec.get("provisioning", {}).get("type")
        if prov:
            pid = "sysprep" if prov == "SysprepRef" else "cidata"
            assert blocks[pid]["inserted"]["ro"] is True
            assert q.cmd("qom-get", path=f"/machine/peripheral/{pid}", property="type") == "ide-cd"
            assert q.cmd("qom-get", path=f"/machine/peripheral/{pid}", property="bootindex") == -1
        else:
            assert "cidata" not in blocks and "sysprep" not in blocks

        # Empty root ports left for hotplug: enough to reach the 16-device limit. Before the
        # firmware runs (-S) bridges have no bus numbers, so query-pci cannot see behind them;
        # the QOM parent_bus link of every device says where it sits.
        peripherals = [p["name"] for p in q.cmd("qom-list", path="/machine/peripheral")
                       if p["type"].startswith("child<")]
        ports = {p for p in peripherals
                 if q.cmd("qom-get", path=f"/machine/peripheral/{p}", property="type")
                 == "pcie-root-port"}
        used = set()
        for p in peripherals:
            bus = q.cmd("qom-get", path=f"/machine/peripheral/{p}", property="parent_bus")
            used.add(bus.rstrip("/").split("/")[-1])
        free_ports = len(ports - used)
        assert free_ports == 16 - len(spec["blockDeviceRefs"]) - hot_virtio

        # Console, guest agent and VNC sockets exist for the agent to connect to.
        for sock in ("console.sock", "agent.sock", "vnc.sock"):
            assert (pathlib.Path(qmp_sock).parent / sock).exists(), sock
    finally:
        qemu.close()
    log = read_log(scratch / "qemu.log")
    assert qemu.proc.returncode == 0, log
    # QEMU accepted the line without complaint: no warnings on stderr.
    assert "warning" not in log.lower(), log
