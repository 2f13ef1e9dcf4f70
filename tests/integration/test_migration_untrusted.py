"""A peer is untrusted input: it names VMs and disks, never paths on the node it migrates
to. These cases call the destination's peer API directly, as a hostile (but configured,
certificate-holding) hv-1 would, with a prepare whose disk manifests carry
spec.local.path pointing outside hv-2's directories. hv-2 must place a written disk at its
own default location and keep the manifest it used, and look for a read-only image only
where it keeps images itself. (A file of its own next to test_migration.py's cases, whose
`nodes` fixture it shares, to keep each file readable.)"""
import hashlib
import json
import struct
import uuid

from test_migration import nodes, no_leftovers  # noqa: F401 (a fixture)

API_GROUP = "virtualization.deckhouse.io/v1alpha2"


def peer_post(node, target, path, body, tmp_path):
    """POST body (JSON) from node's namespace to target's peer API with node's client
    certificate; returns (HTTP status, parsed answer or None)."""
    req = tmp_path / f"req-{uuid.uuid4().hex[:8]}.json"
    out = tmp_path / f"ans-{uuid.uuid4().hex[:8]}.json"
    req.write_text(json.dumps(body))
    r = node.in_netns(
        "curl", "-sS", "-o", str(out), "-w", "%{http_code}", "--max-time", "90",
        "--cacert", str(target.certs / "ca-cert.pem"),
        "--cert", str(node.certs / "client-cert.pem"),
        "--key", str(node.certs / "client-key.pem"),
        "--resolve", f"{target.name}:7443:{target.address}",
        "-H", "Content-Type: application/json", "--data-binary", f"@{req}",
        f"https://{target.name}:7443{path}")
    assert r.returncode == 0, \
        f"{r.stderr}\n{target.name}'s log, last 3000 characters:\n{target.log.read_text()[-3000:]}"
    text = out.read_text() if out.exists() else ""
    return int(r.stdout), json.loads(text) if text.strip() else None


def prepare(vm, disks, refs):
    """A prepare request as a source would send it, for VM vm with disks (the disks[]
    entries) and blockDeviceRefs refs."""
    return {
        "id": str(uuid.uuid4()), "generation": 1, "source": "hv-1",
        "vm": {"apiVersion": API_GROUP, "kind": "VirtualMachine",
               "metadata": {"name": vm, "namespace": "default"},
               "spec": {"virtualMachineClassName": "host", "cpu": {"cores": 1},
                        "memory": {"size": "256Mi"}, "runPolicy": "Manual",
                        "blockDeviceRefs": refs}},
        "disks": disks, "record": {}, "files": {}, "capabilities": {},
        "sharedMarker": uuid.uuid4().hex,
    }


def test_a_peers_disk_path_is_not_used(nodes, tmp_path):  # noqa: F811
    """A written disk whose manifest names a path outside the disk directory, without the
    source's marker beside it: created at hv-2's default location, nothing at the peer's
    path, and the manifest hv-2 journals (its drop-in-to-be) has no path."""
    a, b, _, _ = nodes
    evil_dir = tmp_path / "not-a-disk-dir"
    evil_dir.mkdir()
    evil = evil_dir / "planted.qcow2"
    disk = {"kind": "VirtualDisk", "name": "evil-root", "format": "qcow2", "readOnly": False,
            "virtualSize": 64 << 20,
            "manifest": {"apiVersion": API_GROUP, "kind": "VirtualDisk",
                         "metadata": {"name": "evil-root", "namespace": "default"},
                         "spec": {"local": {"path": str(evil)}}}}
    req = prepare("evil", [disk], [{"kind": "VirtualDisk", "name": "evil-root"}])
    status, answer = peer_post(a, b, "/peer/v1/migrations", req, tmp_path)
    try:
        assert status == 201, answer
        assert not evil.exists() and not list(evil_dir.iterdir())
        assert b.disk_path("evil-root").exists()
        journal = b.journals()[req["id"]]
        assert journal["created"] == [str(b.disk_path("evil-root"))], journal
        kept = journal["manifests"][1]
        assert kept["metadata"]["name"] == "evil-root"
        assert "path" not in kept["spec"]["local"], kept
        assert "not storage this node shares" in b.log.read_text()
    finally:
        peer_post(a, b, f"/peer/v1/migrations/{req['id']}/abort", {"reason": "test"},
                  tmp_path)
    no_leftovers(b, "evil", "evil-root")
    assert not evil.exists()


def test_a_peers_image_path_is_not_exposed(nodes, tmp_path):  # noqa: F811
    """A read-only image whose manifest names a file of hv-2's with the very size and
    fingerprint (the peer guessed or knew them): not given to the guest; hv-2 looks only
    at its own image location, finds nothing, and refuses the prepare saying where it
    looked."""
    a, b, _, _ = nodes
    secret = tmp_path / "secret.iso"
    secret.write_bytes(b"root:$6$not-for-guests\n" * 100)
    data = secret.read_bytes()
    fingerprint = hashlib.sha256(struct.pack("=Q", len(data)) + data[:65536]).hexdigest()
    image = {"kind": "VirtualImage", "name": "peek", "format": "iso", "readOnly": True,
             "virtualSize": len(data), "fingerprint": fingerprint,
             "manifest": {"apiVersion": API_GROUP, "kind": "VirtualImage",
                          "metadata": {"name": "peek", "namespace": "default"},
                          "spec": {"local": {"path": str(secret), "format": "iso"}}}}
    req = prepare("peeker", [image], [{"kind": "VirtualImage", "name": "peek"}])
    status, answer = peer_post(a, b, "/peer/v1/migrations", req, tmp_path)
    assert status == 409, answer
    default = b.root / "state" / "images" / "default" / "peek.iso"
    assert str(default) in json.dumps(answer), answer
    assert b.vm("peeker") is None
    assert b.journals()[req["id"]]["step"] == "Aborted"


def test_a_manifest_for_another_object_is_refused(nodes, tmp_path):  # noqa: F811
    """The manifest must describe the disk announced: one naming another disk (whose
    drop-in the commit would overwrite) or a name that is no DNS label is refused."""
    a, b, _, _ = nodes
    for name, manifest_name in (("evil2-root", "someone-elses"), ("../../etc", "x")):
        disk = {"kind": "VirtualDisk", "name": name, "format": "qcow2", "readOnly": False,
                "virtualSize": 1 << 20,
                "manifest": {"apiVersion": API_GROUP, "kind": "VirtualDisk",
                             "metadata": {"name": manifest_name}}}
        req = prepare("evil2", [disk], [{"kind": "VirtualDisk", "name": "evil2-root"}])
        status, answer = peer_post(a, b, "/peer/v1/migrations", req, tmp_path)
        assert status == 422, answer
        assert b.vm("evil2") is None
    assert not (b.etc / "disks.d" / "someone-elses.json").exists()
    assert not b.disk_path("someone-elses").exists()


def test_a_peers_machine_type_cannot_add_qemu_options(nodes, tmp_path):  # noqa: F811
    """The record's machine type goes into the incoming QEMU's -machine argument: one
    carrying properties (",kernel=FILE" would have QEMU read a file the peer chose and
    hand it to the guest through fw_cfg) is refused before anything is made."""
    a, b, _, _ = nodes
    disk = {"kind": "VirtualDisk", "name": "evil3-root", "format": "qcow2", "readOnly": False,
            "virtualSize": 1 << 20,
            "manifest": {"apiVersion": API_GROUP, "kind": "VirtualDisk",
                         "metadata": {"name": "evil3-root"}}}
    req = prepare("evil3", [disk], [{"kind": "VirtualDisk", "name": "evil3-root"}])
    req["record"] = {"machine": {"alias": "q35",
                                 "resolved": "pc-q35-7.2,kernel=/etc/hostname"}}
    status, answer = peer_post(a, b, "/peer/v1/migrations", req, tmp_path)
    assert status == 422 and "record.machine" in answer["message"], answer
    assert b.vm("evil3") is None
    assert not b.disk_path("evil3-root").exists()
