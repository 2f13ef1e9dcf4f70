"""The vmlet CLI against a real vmletd: the seed's columns, operations, apply/delete,
and a clear failure when vmletd is not running."""
import json
import re
import subprocess

import pytest

from conftest import vmlet_binary
from daemon import Daemon, qemu_pids


@pytest.fixture
def daemon(test_guest, qemu_available):
    d = Daemon(test_guest / "guest.iso")
    yield d
    d.stop()


def vmlet(d, *args, check=True, stdin=None):
    r = subprocess.run([str(vmlet_binary()), *args, "-c", str(d.conf)], capture_output=True,
                       text=True, input=stdin)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_get_describe_and_operations(daemon):
    daemon.guest_disk("linux-vm-root")
    daemon.write_vm("linux-vm", cpu={"cores": 1, "coreFraction": "10%"},
                    memory={"size": "256Mi"})
    daemon.start()
    daemon.wait_phase("linux-vm", "Running")

    out = vmlet(daemon, "get").stdout.splitlines()
    assert re.split(r"\s{3,}", out[0].strip()) == ["NAME", "PHASE", "NODE", "IPADDRESS", "AGE"]
    row = out[1].split()
    assert row[:3] == ["linux-vm", "Running", "test-node"]
    assert re.fullmatch(r"\d+s", row[-1])

    wide = vmlet(daemon, "get", "linux-vm", "-o", "wide").stdout.splitlines()
    assert re.split(r"\s{3,}", wide[0].strip()) == [
        "NAME", "PHASE", "CORES", "COREFRACTION", "MEMORY", "NEED RESTART", "AGENT",
        "MIGRATABLE", "NODE", "IPADDRESS", "AGE"]
    assert wide[1].split()[:8] == ["linux-vm", "Running", "1", "10%", "256Mi", "False",
                                   "False", "False"]

    as_json = json.loads(vmlet(daemon, "get", "linux-vm", "-o", "json").stdout)
    assert as_json["kind"] == "VirtualMachine" and as_json["status"]["phase"] == "Running"

    r = vmlet(daemon, "stop", "linux-vm")
    assert re.fullmatch(r"virtualmachineoperation\.virtualization\.deckhouse\.io/"
                        r"stop-linux-vm-[0-9a-f]{8} created\n", r.stdout)
    daemon.wait_phase("linux-vm", "Stopped", 60)
    vmlet(daemon, "start", "linux-vm")
    daemon.wait_phase("linux-vm", "Running", 60)

    desc = vmlet(daemon, "describe", "linux-vm").stdout
    assert "Phase:       Running" in desc
    # Where QEMU runs: its own cgroup in every v1 hierarchy, below the test's.
    assert re.search(r"^Cgroup:      cgroupfs v1 cpu:/\S*vmlet-test-\S+/default\.linux-vm ",
                     desc, re.M), desc
    assert '"requestedCores" : "100m"' in desc
    assert re.search(r"Stop\s+Completed", desc) and re.search(r"Start\s+Completed", desc)

    missing = vmlet(daemon, "get", "nope", check=False)
    assert missing.returncode == 1
    assert 'virtualmachines "nope" not found in namespace "default"' in missing.stderr


def test_apply_and_delete(daemon):
    daemon.guest_disk("applied-root")
    daemon.start()
    vm = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
          "metadata": {"name": "applied"},
          "spec": {"virtualMachineClassName": "host", "cpu": {"cores": 1},
                   "memory": {"size": "256Mi"}, "terminationGracePeriodSeconds": 1,
                   "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "applied-root"}]}}
    r = vmlet(daemon, "apply", "-f", "-", stdin=json.dumps(vm))
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/applied configured\n"
    daemon.wait_phase("applied", "Running")

    bad = dict(vm, spec=dict(vm["spec"], cpu={"cores": 0}))
    r = vmlet(daemon, "apply", "-f", "-", stdin=json.dumps(bad), check=False)
    assert r.returncode == 1
    assert "<stdin>: spec.cpu.cores: expected an integer from 1 to 248, found 0" in r.stderr
    assert daemon.vm("applied")["status"]["phase"] == "Running"  # nothing was changed

    r = vmlet(daemon, "delete", "applied")
    assert r.stdout == 'virtualmachine.virtualization.deckhouse.io "applied" deleted\n'
    import time
    deadline = time.monotonic() + 30
    while daemon.vm("applied") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert qemu_pids(daemon.root) == []


def test_clear_error_without_vmletd(tmp_path):
    conf = tmp_path / "vmlet.conf"
    conf.write_text(f"[paths]\nrun-dir={tmp_path}/run\n")
    r = subprocess.run([str(vmlet_binary()), "get", "-c", str(conf)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert r.stderr.startswith(f"vmlet get: cannot reach vmletd at {tmp_path}/run/vmletd.sock")
    assert "(is vmletd running?)" in r.stderr


def test_get_watch_shows_each_change(daemon):
    """Like the seed's `d8 k get vm -w`: the header once, then a row per change."""
    import time
    daemon.guest_disk("watched-root")
    daemon.write_vm("watched")
    daemon.start()
    daemon.wait_phase("watched", "Running")
    watcher = subprocess.Popen([str(vmlet_binary()), "get", "-w", "-c", str(daemon.conf)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = watcher.stdout.readline()
        assert re.split(r"\s{3,}", first.strip()) == ["NAME", "PHASE", "NODE", "IPADDRESS", "AGE"]
        assert watcher.stdout.readline().split()[:3] == ["watched", "Running", "test-node"]
        vmlet(daemon, "stop", "watched", "--force")
        phases = []
        deadline = time.monotonic() + 30
        while "Stopped" not in phases and time.monotonic() < deadline:
            phases.append(watcher.stdout.readline().split()[1])
        assert phases[0] == "Stopping" and phases[-1] == "Stopped", phases
    finally:
        watcher.kill()
        watcher.wait()


def test_seed_yaml_applied_verbatim(daemon):
    """The guide's first step, `d8 k apply -f - <<EOF` with its YAML, as `vmlet apply -f -`:
    the VM runs and its guest receives the cloud-config exactly as written."""
    from conftest import SOURCE
    from vmrun import Console
    daemon.guest_disk("linux-vm-root")
    daemon.start()
    seed_yaml = (SOURCE / "tests" / "seed" / "linux-vm.yaml").read_text()
    r = vmlet(daemon, "apply", "-f", "-", stdin=seed_yaml)
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/linux-vm configured\n"
    daemon.wait_phase("linux-vm", "Running", 60)
    row = vmlet(daemon, "get", "linux-vm").stdout.splitlines()[1].split()
    assert row[:3] == ["linux-vm", "Running", "test-node"]
    con = Console(str(daemon.root / "run" / "vms" / "default.linux-vm" / "console.sock"))
    try:
        con.wait_for("VMLET-CIDATA-OK", 90)
        got = "\n".join(con.section("VMLET-CIDATA-BEGIN user-data",
                                    "VMLET-CIDATA-END user-data")) + "\n"
    finally:
        con.close()
    expected = json.loads((SOURCE / "tests" / "golden" / "seed-linux-vm.json").read_text())
    assert got == expected["spec"]["provisioning"]["userData"]
    assert "users:\n- name: cloud\n" in got


def test_watch_backlog_is_bounded(daemon):
    """A watcher that stops reading cannot make vmletd queue events without end: past
    1 MiB of backlog its watch is ended. A watcher that reads is unaffected."""
    import socket
    daemon.write_vm("idle", runPolicy="AlwaysOff")
    daemon.start()
    daemon.wait_phase("idle", "Stopped", 10)
    request = (b"GET /apis/virtualization.deckhouse.io/v1alpha2/namespaces/default/"
               b"virtualmachines?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
    stalled = socket.socket(socket.AF_UNIX)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(daemon.socket)
    stalled.sendall(request)
    reader = subprocess.Popen([str(vmlet_binary()), "get", "-w", "-c", str(daemon.conf)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().startswith("NAME")
        # Each patch is a MODIFIED event of about 1 KiB; 2500 of them exceed the bound
        # plus what the socket buffers hold.
        for i in range(2500):
            status, _ = daemon.request(
                "PATCH", "/apis/virtualization.deckhouse.io/v1alpha2/namespaces/default/"
                "virtualmachines/idle", {"metadata": {"labels": {"n": str(i)}}})
            assert status == 200
        # The stalled client now drains what was queued and then sees the end of its stream:
        # the chunked terminator (the connection itself stays open, HTTP/1.1 keep-alive).
        stalled.settimeout(30)
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = stalled.recv(65536)
            assert chunk, "connection closed without ending the stream"
            data += chunk
        assert 1024 * 1024 < len(data) < 3 * 1024 * 1024
        # The reading client is still being served.
        assert reader.poll() is None
        assert daemon.request("GET", "/healthz")[0] == 200
    finally:
        stalled.close()
        reader.kill()
        reader.wait()


def test_refused_start_is_a_failed_operation(daemon):
    """`vmlet start` of an AlwaysOff VM: the VirtualMachineOperation is created and Failed
    with the reason, `describe` lists it, and the CLI exits non-zero saying why."""
    daemon.write_vm("off", runPolicy="AlwaysOff")
    daemon.start()
    daemon.wait_phase("off", "Stopped", 10)
    r = vmlet(daemon, "start", "off", check=False)
    assert r.returncode == 1
    name = re.fullmatch(r"virtualmachineoperation\.virtualization\.deckhouse\.io/"
                        r"(start-off-[0-9a-f]{8}) created\n", r.stdout).group(1)
    reason = "off: runPolicy AlwaysOff does not allow starting the VM"
    assert r.stderr == f"vmlet start: {name} failed: {reason}\n"
    desc = vmlet(daemon, "describe", "off").stdout
    assert re.search(rf"Start\s+Failed\s+{re.escape(reason)}$", desc, re.M), desc
    assert daemon.vm("off")["status"]["phase"] == "Stopped"
    assert qemu_pids(daemon.root) == []


def test_warnings_are_shown_not_dropped(daemon):
    """Warnings reach the user: `vmlet apply` prints them as kubectl prints an API server's
    ("Warning: ..."), status.warnings and `describe` keep them, for a #cloud-config that is
    not valid YAML inline or in a Secret (whose content is never quoted)."""
    import base64
    import os
    broken = "#cloud-config\npackages: [nginx\nusers:\n  - name: cloud\n    passwd: hunter2\n"
    secret = daemon.etc / "secrets.d" / "broken.json"
    secret.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "broken"},
        "type": "provisioning.virtualization.deckhouse.io/cloud-init",
        "data": {"userData": base64.b64encode(broken.encode()).decode()}}))
    os.chmod(secret, 0o600)
    daemon.write_vm("fromsecret", runPolicy="AlwaysOff", provisioning={
        "type": "UserDataRef", "userDataRef": {"kind": "Secret", "name": "broken"}})
    daemon.start()
    vm = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
          "metadata": {"name": "inline"},
          "spec": {"virtualMachineClassName": "host", "cpu": {"cores": 1},
                   "memory": {"size": "256Mi"}, "runPolicy": "AlwaysOff", "colour": "blue",
                   "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "inline-root"}],
                   "provisioning": {"type": "UserData", "userData": broken}}}
    r = vmlet(daemon, "apply", "-f", "-", stdin=json.dumps(vm))
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/inline configured\n"
    path = daemon.etc / "vms.d" / "inline.json"
    yaml_problem = ("user-data: #cloud-config is not valid YAML: did not find expected ',' or "
                    "']' at line 3, column 6 (while parsing a flow sequence at line 2, column 11)")
    inline_warnings = [line[len("Warning: "):] for line in r.stderr.splitlines()]
    assert f"{path}: spec.provisioning.userData: {yaml_problem}" in inline_warnings
    assert f"{path}: spec.colour: unknown field, ignored" in inline_warnings
    assert daemon.vm("inline")["status"]["warnings"] == inline_warnings
    desc = vmlet(daemon, "describe", "inline").stdout
    assert "Warnings:\n" + "".join(f"  {w}\n" for w in inline_warnings) in desc

    from_secret = daemon.vm("fromsecret")["status"]["warnings"]
    assert from_secret == [f"{daemon.etc}/vms.d/fromsecret.json: spec.provisioning.userDataRef: "
                           f'Secret "broken": {yaml_problem}']
    assert "hunter2" not in json.dumps(daemon.vm("fromsecret"))
    # Warnings never keep a VM from its phase; once the Secret is fixed they are gone.
    assert daemon.vm("fromsecret")["status"]["phase"] == "Stopped"
    secret.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "broken"},
        "type": "provisioning.virtualization.deckhouse.io/cloud-init",
        "stringData": {"userData": "#cloud-config\n"}}))
    import time
    deadline = time.monotonic() + 10
    while "warnings" in daemon.vm("fromsecret")["status"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
