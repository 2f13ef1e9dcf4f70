"""The vmlet CLI against a real vmletd: the seed's columns, operations, apply/delete,
create -f, evict/migrate and their operations (vmop), and a clear failure when vmletd is
not running; its command table (usage, every command's --help, unknown commands), which
needs no vmletd."""
import json
import queue
import re
import socket
import subprocess
import threading

import pytest

from conftest import vmlet_binary
from daemon import Daemon, qemu_pids
from waiting import wait


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
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/applied created\n"
    daemon.wait_phase("applied", "Running")
    # Again: kubectl's word for an object that was there.
    r = vmlet(daemon, "apply", "-f", "-", stdin=json.dumps(vm))
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/applied configured\n"

    bad = dict(vm, spec=dict(vm["spec"], cpu={"cores": 0}))
    r = vmlet(daemon, "apply", "-f", "-", stdin=json.dumps(bad), check=False)
    assert r.returncode == 1
    assert "<stdin>: spec.cpu.cores: expected an integer from 1 to 248, found 0" in r.stderr
    assert daemon.vm("applied")["status"]["phase"] == "Running"  # nothing was changed

    r = vmlet(daemon, "delete", "applied")
    assert r.stdout == 'virtualmachine.virtualization.deckhouse.io "applied" deleted\n'
    daemon.wait_vm("applied", 30, "gone", until=lambda vm: vm is None)
    assert qemu_pids(daemon.root) == []


# The command table of agent/vmlet/cli.c in usage order, written out here so that a
# command added there (or dropped) without being listed here fails.
COMMANDS = ["get", "describe", "start", "stop", "restart", "evict", "migrate", "drain",
            "uncordon", "apply", "create", "delete", "attach", "detach", "pause", "unpause", "patch", "edit", "render",
            "validate", "version", "help"]


def run_vmlet(*args):
    return subprocess.run([str(vmlet_binary()), *args], capture_output=True, text=True)


def usage_rows(usage):
    """The Commands block as (command, column where its summary starts)."""
    block = usage.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    rows = []
    for line in block:
        if re.match(r"  \S", line):
            summary = re.search(r"\S  +(\S)", line[2:])
            rows.append([line.split()[0], summary.start(1) + 2 if summary else None])
        else:  # a synopsis too wide: its summary, alone on the next line
            assert rows and rows[-1][1] is None, line
            rows[-1][1] = len(line) - len(line.lstrip())
    return rows


def test_usage_lists_every_command_aligned():
    usage = run_vmlet("--help")
    assert usage.returncode == 0 and usage.stderr == ""
    assert usage.stdout.startswith("Usage: vmlet COMMAND [OPTIONS]\n\nCommands:\n")
    assert usage.stdout.endswith("\n\nRun `vmlet COMMAND --help` for a command's options.\n")
    rows = usage_rows(usage.stdout)
    assert [name for name, _ in rows] == COMMANDS
    assert len({column for _, column in rows}) == 1, rows
    for same in (["-h"], ["help"], ["help", "--help"], ["help", "help"]):
        assert run_vmlet(*same).stdout == usage.stdout, same
    bare = run_vmlet()
    assert (bare.returncode, bare.stdout, bare.stderr) == (2, "", usage.stdout)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    r = run_vmlet(command, "--help")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    if command == "help":
        assert r.stdout.startswith("Usage: vmlet COMMAND [OPTIONS]\n")
    else:
        # GOption's usage line (its ellipsis depends on the locale's charset).
        assert re.match(rf"Usage:\n  {command} \[OPTION[^]]*\]", r.stdout), r.stdout
    assert run_vmlet("help", command).stdout == r.stdout


def test_unknown_command_is_a_usage_error():
    usage = run_vmlet("help").stdout
    for args in (["frobnicate"], ["frobnicate", "--help"], ["help", "frobnicate"]):
        r = run_vmlet(*args)
        assert r.returncode == 2, args
        assert r.stdout == ""
        assert r.stderr == 'vmlet: unknown command "frobnicate"\n' + usage


def test_version():
    r = run_vmlet("version")
    assert r.returncode == 0 and re.fullmatch(r"vmlet \d+\.\d+\.\d+\n", r.stdout), r.stdout
    assert run_vmlet("--version").stdout == r.stdout


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

        def rows():  # each read blocks until vmlet prints the next row
            phases.append(watcher.stdout.readline().split()[1])
            return phases
        wait(rows, 30, "a Stopped row from vmlet get -w", 0, until=lambda p: "Stopped" in p)
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
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/linux-vm created\n"
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
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/inline created\n"
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
    daemon.wait_vm("fromsecret", 10, "without warnings",
                   until=lambda vm: "warnings" not in vm["status"])


CREATED = r"virtualmachineoperation\.virtualization\.deckhouse\.io/({}) created\n"
NO_MIGRATION = "migration is not enabled on this node ([migration] in vmlet.conf)"


def columns(line):
    return re.split(r"\s{3,}", line.strip())


def line_reader(stream):
    """A readline(timeout) over stream: a row that never comes fails, not hangs, the test."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in iter(stream.readline, "")],
                     daemon=True).start()
    return lambda timeout=20: lines.get(timeout=timeout)


def test_evict_and_migrate_without_migration_config(daemon):
    """A node without [migration]: `vmlet evict` and `vmlet migrate --to` create their
    operation, which is Failed at once with the reason; the CLI says so and exits 1, --wait
    or not, and the VM runs on in the same QEMU."""
    daemon.guest_disk("mover-root")
    daemon.write_vm("mover")
    daemon.start()
    pid = daemon.wait_phase("mover", "Running")["status"]["pid"]

    r = vmlet(daemon, "evict", "mover", "--wait", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    evict = re.fullmatch(CREATED.format(r"evict-mover-[0-9a-f]{8}"), r.stdout).group(1)
    assert r.stderr == f"vmlet evict: {evict} failed: {NO_MIGRATION}\n"

    r = vmlet(daemon, "migrate", "mover", "--to", "hv-2", "--force", check=False)
    assert r.returncode == 1
    migrate = re.fullmatch(CREATED.format(r"migrate-mover-[0-9a-f]{8}"), r.stdout).group(1)
    assert r.stderr == f"vmlet migrate: {migrate} failed: {NO_MIGRATION}\n"

    # What was asked is what vmletd recorded: --to is the node selector, --force the force.
    op = json.loads(vmlet(daemon, "get", "vmop", migrate, "-o", "json").stdout)
    assert op["spec"] == {"virtualMachineName": "mover", "type": "Migrate", "force": True,
                          "migrate": {"nodeSelector": {"kubernetes.io/hostname": "hv-2"}}}
    assert op["status"] == {"phase": "Failed", "reason": NO_MIGRATION}
    vm = daemon.vm("mover")
    assert vm["status"]["phase"] == "Running" and vm["status"]["pid"] == pid

    # Refused before anything is sent: a node name that cannot be one, --timeout alone.
    for args, why in ((["--to", "Not_A_Node"], '--to: "Not_A_Node" is not a node name'),
                      (["--timeout", "1m"], "--timeout is how long --wait waits"),
                      (["--wait", "--timeout", "5x"], '--timeout: expected a duration')):
        r = vmlet(daemon, "migrate", "mover", *args, check=False)
        assert (r.returncode, r.stdout) == (2, ""), args
        assert why in r.stderr, r.stderr
    ops = json.loads(vmlet(daemon, "get", "vmop", "-o", "json").stdout)["items"]
    assert sorted(o["metadata"]["name"] for o in ops) == sorted([evict, migrate])


GUIDE_EVICT = """apiVersion: virtualization.deckhouse.io/v1alpha2
kind: VirtualMachineOperation
metadata:
  generateName: evict-linux-vm-
spec:
  virtualMachineName: linux-vm
  type: Evict
"""


def test_create_get_and_delete_operations(daemon, tmp_path):
    """The DVP guide's own Evict manifest through `vmlet create -f`, generateName honoured;
    `vmlet get vmop` with DVP's columns; `vmlet delete vmop`; create's refusals."""
    daemon.write_vm("linux-vm", runPolicy="AlwaysOff")
    daemon.start()
    daemon.wait_phase("linux-vm", "Stopped", 10)

    guide = tmp_path / "evict.yaml"
    guide.write_text(GUIDE_EVICT)
    r = vmlet(daemon, "create", "-f", str(guide), check=False)
    # Five characters as an API server generates them, not vmletd's own 8-hex uid.
    evict = re.fullmatch(CREATED.format(r"evict-linux-vm-[bcdfghjklmnpqrstvwxz2456789]{5}"),
                         r.stdout).group(1)
    # A stopped VM cannot be evicted: created, Failed, exit 1 (as for start/stop).
    assert r.returncode == 1 and r.stderr.startswith(f"vmlet create: {guide}: {evict} failed: ")

    # Any prefix is kept (this one is unlike vmletd's own names), and a name given is used.
    stop = GUIDE_EVICT.replace("evict-linux-vm-", "drain-me-").replace("Evict", "Stop")
    r = vmlet(daemon, "create", "-f", "-", stdin=stop)
    drain = re.fullmatch(CREATED.format(r"drain-me-[bcdfghjklmnpqrstvwxz2456789]{5}"),
                         r.stdout).group(1)
    named = stop.replace("generateName: drain-me-", "name: my-stop")
    assert vmlet(daemon, "create", "-f", "-", stdin=named).stdout == \
        "virtualmachineoperation.virtualization.deckhouse.io/my-stop created\n"
    again = vmlet(daemon, "create", "-f", "-", stdin=named, check=False)
    assert again.returncode == 1 and again.stdout == ""
    assert 'virtualmachineoperations "my-stop" already exists in namespace "default"' in \
        again.stderr
    # apply of an operation creates it too.
    r = vmlet(daemon, "apply", "-f", "-", stdin=named.replace("my-stop", "applied-stop"))
    assert r.stdout == "virtualmachineoperation.virtualization.deckhouse.io/applied-stop created\n"

    out = vmlet(daemon, "get", "vmop").stdout.splitlines()
    assert columns(out[0]) == ["NAME", "PHASE", "TYPE", "VIRTUALMACHINE", "AGE"]
    rows = {row.split()[0]: row.split() for row in out[1:]}
    assert set(rows) == {evict, drain, "my-stop", "applied-stop"}
    assert rows[evict][1:4] == ["Failed", "Evict", "linux-vm"]
    assert rows["my-stop"][1:4] == ["Completed", "Stop", "linux-vm"]
    assert all(re.fullmatch(r"\d+s", row[4]) for row in rows.values()), rows
    # Columns line up: every cell starts where its header does.
    starts = [out[0].index(h) for h in ("PHASE", "TYPE", "VIRTUALMACHINE", "AGE")]
    for line in out[1:]:
        assert all(line[s - 3:s] == "   " and line[s] != " " for s in starts), line

    wide = vmlet(daemon, "get", "vmops", "my-stop", "-o", "wide").stdout.splitlines()
    assert columns(wide[0]) == ["NAME", "PHASE", "TYPE", "VIRTUALMACHINE", "AGE", "PROGRESS",
                                "TARGET", "REASON"]
    assert wide[1].split()[:4] == ["my-stop", "Completed", "Stop", "linux-vm"]
    assert wide[1].endswith("already stopped")
    phase = vmlet(daemon, "get", "virtualmachineoperation", evict, "-o",
                  "jsonpath={.status.phase}").stdout
    assert phase == "Failed"

    r = vmlet(daemon, "delete", "vmop", "my-stop")
    assert r.stdout == 'virtualmachineoperation.virtualization.deckhouse.io "my-stop" deleted\n'
    gone = vmlet(daemon, "get", "vmop", "my-stop", check=False)
    assert gone.returncode == 1
    assert 'virtualmachineoperations "my-stop" not found in namespace "default"' in gone.stderr
    r = vmlet(daemon, "delete", "vmop", "my-stop", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    left = [line.split()[0] for line in vmlet(daemon, "get", "vmop").stdout.splitlines()[1:]]
    assert sorted(left) == sorted([evict, drain, "applied-stop"])


def test_create_vm_and_refusals(daemon, tmp_path):
    """`vmlet create -f` of a VirtualMachine creates it and refuses it once it exists
    (vmletd's PUT would replace it); unknown and drop-in-only kinds are named with the
    file before anything is sent."""
    daemon.start()
    vm = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
          "metadata": {"name": "made"},
          "spec": {"virtualMachineClassName": "host", "cpu": {"cores": 1},
                   "memory": {"size": "256Mi"}, "runPolicy": "AlwaysOff",
                   "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "made-root"}]}}
    path = tmp_path / "made.json"
    path.write_text(json.dumps(vm))
    r = vmlet(daemon, "create", "-f", str(path))
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/made created\n"
    daemon.wait_phase("made", "Stopped", 10)
    before = (daemon.etc / "vms.d" / "made.json").read_text()

    changed = dict(vm, spec=dict(vm["spec"], cpu={"cores": 2}))
    path.write_text(json.dumps(changed))
    r = vmlet(daemon, "create", "-f", str(path), check=False)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f'vmlet create: {path}: virtualmachines "made" already exists in '
                        f'namespace "default"\n')
    assert (daemon.etc / "vms.d" / "made.json").read_text() == before

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    r = vmlet(daemon, "create", "-f", str(unknown), check=False)
    assert (r.returncode, r.stdout) == (1, "")
    assert f'{unknown}: unknown kind "ConfigMap"' in r.stderr
    # A List: every problem at once, each with its item, and nothing sent.
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
         "metadata": {"name": "d"}},
        dict(vm, metadata={"name": "second"}),
        {"kind": "Frobnicator"}]}))
    r = vmlet(daemon, "create", "-f", str(listed), check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert f"{listed}: items[0]: kind VirtualDisk is not served by vmletd's API" in r.stderr
    assert f'{listed}: items[2]: unknown kind "Frobnicator"' in r.stderr
    assert daemon.vm("second") is None


def test_get_vmop_watch_prints_new_and_changed_rows(daemon):
    """`vmlet get vmop -w`: the header once, then a row for each operation as it appears."""
    daemon.write_vm("idle", runPolicy="AlwaysOff")
    daemon.start()
    daemon.wait_phase("idle", "Stopped", 10)
    vmlet(daemon, "create", "-f", "-", check=False,  # Failed: idle is off
          stdin=GUIDE_EVICT.replace("linux-vm", "idle").replace("generateName: evict-idle-",
                                                                 "name: first"))
    watcher = subprocess.Popen([str(vmlet_binary()), "get", "vmop", "-w", "-c",
                                str(daemon.conf)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    readline = line_reader(watcher.stdout)
    try:
        assert columns(readline()) == ["NAME", "PHASE", "TYPE", "VIRTUALMACHINE", "AGE"]
        assert readline().split()[:4] == ["first", "Failed", "Evict", "idle"]
        vmlet(daemon, "create", "-f", "-",
              stdin=GUIDE_EVICT.replace("linux-vm", "idle").replace(
                  "generateName: evict-idle-", "name: second").replace("Evict", "Stop"))
        assert readline().split()[:4] == ["second", "Completed", "Stop", "idle"]
        # Nothing changed since: no row is printed again (AGE alone is no change).
        with pytest.raises(queue.Empty):
            readline(2.5)
        assert watcher.poll() is None
    finally:
        watcher.kill()
        watcher.wait()


def test_evict_wait_follows_the_operation(test_guest, qemu_available, tmp_path):
    """--wait against a real migration that cannot go anywhere: [migration] on, and its one
    peer accepts connections but never answers TLS, so choosing a target takes vmletd's 5 s
    ask timeout. --wait prints the progress; --timeout gives up without touching the
    operation, which `vmlet delete vmop` then cancels; waiting longer sees it Failed with
    DVP's reason. The VM runs on throughout."""
    from peers import Pki
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen(8)  # the kernel completes the handshake; nobody ever reads
    api = socket.socket()
    api.bind(("127.0.0.1", 0))
    api_port = api.getsockname()[1]
    api.close()
    d = Daemon(test_guest / "guest.iso")
    try:
        certs = Pki(tmp_path / "ca").node_dir(d.root / "pki", "test-node", "127.0.0.1")
        d.conf.write_text(d.conf.read_text() + f"[migration]\nlisten-address=127.0.0.1\n"
                          f"port={api_port}\ncert-dir={certs}\n")
        (d.etc / "peers.d").mkdir()
        (d.etc / "peers.d" / "hv-2.json").write_text(json.dumps(
            {"name": "hv-2", "address": "127.0.0.1", "port": stall.getsockname()[1]}))
        d.guest_disk("mover-root")
        d.write_vm("mover")
        d.start()
        pid = d.wait_phase("mover", "Running")["status"]["pid"]

        r = vmlet(d, "evict", "mover", "--wait", "--timeout", "1s", check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = r.stdout.splitlines(keepends=True)
        name = re.fullmatch(CREATED.format(r"evict-mover-[0-9a-f]{8}"), lines[0]).group(1)
        assert lines[1:] == [f"{name}: InProgress, 1%\n"], r.stdout
        assert r.stderr == (f"vmlet evict: {name}: timed out after 1s (InProgress, 1%); the "
                            f"operation goes on: `vmlet get vmop {name}` shows it, `vmlet "
                            f"delete vmop {name}` cancels it\n")
        row = vmlet(d, "get", "vmop", name, "-o", "wide").stdout.splitlines()[1].split()
        assert row[:3] == [name, "InProgress", "Evict"] and row[5] == "1%"

        vmlet(d, "delete", "vmop", name)
        d.wait_phase("mover", "Running", 10)
        assert vmlet(d, "get", "vmop", name, check=False).returncode == 1

        r = vmlet(d, "evict", "mover", "--wait", check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = r.stdout.splitlines(keepends=True)
        name = re.fullmatch(CREATED.format(r"evict-mover-[0-9a-f]{8}"), lines[0]).group(1)
        assert lines[1] == f"{name}: InProgress, 1%\n", r.stdout
        assert r.stderr.startswith(f"vmlet evict: {name} failed: TargetUnschedulable"), r.stderr
        assert "hv-2" in r.stderr
        vm = d.wait_phase("mover", "Running", 10)
        assert vm["status"]["pid"] == pid
    finally:
        d.stop()
        stall.close()
