"""Changing a running VM, the guide's walk-through: cpu.cores 1 -> 2 is accepted, listed in
status.restartAwaitingChanges exactly as the guide prints it, shown as NEED RESTART, and
applied by a restart (or by itself with restartApprovalMode: Automatic). The guest's own
nproc is the proof."""
import json
import subprocess
import time

import pytest

from conftest import vmlet_binary
from daemon import Daemon
from vmrun import Console


@pytest.fixture
def daemon(test_guest, qemu_available):
    d = Daemon(test_guest / "guest.iso")
    yield d
    d.stop()


def vmlet(d, *args, check=True):
    r = subprocess.run([str(vmlet_binary()), *args, "-c", str(d.conf)], capture_output=True,
                       text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def guest_nproc(d, name):
    con = Console(str(d.root / "run" / "vms" / f"default.{name}" / "console.sock"))
    try:
        return int(con.wait_for("VMLET-NPROC", 90).split()[1])
    finally:
        con.close()


def test_seed_cores_change(daemon):
    daemon.guest_disk("linux-vm-root")
    daemon.write_vm("linux-vm", cpu={"cores": 1, "coreFraction": "10%"})
    daemon.start()
    pid = daemon.wait_phase("linux-vm", "Running")["status"]["pid"]
    assert guest_nproc(daemon, "linux-vm") == 1

    r = vmlet(daemon, "patch", "linux-vm", "--type", "merge", "-p",
              '{"spec":{"cpu":{"cores":2}}}')
    assert r.stdout == "virtualmachine.virtualization.deckhouse.io/linux-vm patched\n"
    time.sleep(1)
    vm = daemon.vm("linux-vm")
    assert vm["status"]["pid"] == pid  # accepted, not applied: the same QEMU runs

    out = vmlet(daemon, "get", "linux-vm", "-o",
                "jsonpath={.status.restartAwaitingChanges}").stdout
    assert json.loads(out) == [{"currentValue": 1, "desiredValue": 2, "operation": "replace",
                                "path": "cpu.cores"}]
    wide = vmlet(daemon, "get", "linux-vm", "-o", "wide").stdout.splitlines()[1].split()
    assert wide[:6] == ["linux-vm", "Running", "2", "10%", "256Mi", "True"]

    vmlet(daemon, "restart", "linux-vm")
    vm = daemon.wait_new_pid("linux-vm", pid, 90)
    assert guest_nproc(daemon, "linux-vm") == 2
    assert vm["status"]["restartAwaitingChanges"] == []
    wide = vmlet(daemon, "get", "linux-vm", "-o", "wide").stdout.splitlines()[1].split()
    assert wide[5] == "False"


def test_automatic_approval_restarts_by_itself(daemon):
    daemon.guest_disk("auto-root")
    daemon.write_vm("auto", disruptions={"restartApprovalMode": "Automatic"},
                    terminationGracePeriodSeconds=5)
    daemon.start()
    pid = daemon.wait_phase("auto", "Running")["status"]["pid"]
    assert guest_nproc(daemon, "auto") == 1
    vmlet(daemon, "patch", "auto", "--type", "merge", "-p", '{"spec":{"cpu":{"cores":2}}}')
    vm = daemon.wait_new_pid("auto", pid, 90)
    assert guest_nproc(daemon, "auto") == 2
    assert vm["status"]["restartAwaitingChanges"] == []


def test_immediate_fields_need_no_restart(daemon):
    daemon.guest_disk("live-root")
    daemon.write_vm("live")
    daemon.start()
    pid = daemon.wait_phase("live", "Running")["status"]["pid"]
    vmlet(daemon, "patch", "live", "--type", "merge", "-p",
          '{"metadata":{"labels":{"tier":"web"},"annotations":{"note":"x"}},'
          '"spec":{"disruptions":{"restartApprovalMode":"Automatic"},"runPolicy":"AlwaysOn"}}')
    time.sleep(2)
    vm = daemon.vm("live")
    assert vm["status"]["pid"] == pid
    assert vm["status"]["restartAwaitingChanges"] == []
    assert vm["metadata"]["labels"] == {"tier": "web"}
    assert vm["metadata"]["annotations"] == {"note": "x"}
    assert vm["spec"]["runPolicy"] == "AlwaysOn"
    # runPolicy applies at once: AlwaysOn now refuses a stop.
    r = vmlet(daemon, "stop", "live", check=False)
    assert r.returncode == 1 and "runPolicy AlwaysOn keeps the VM running" in r.stderr
    # ... and AlwaysOff stops it at once, without being asked.
    vmlet(daemon, "patch", "live", "--type", "merge", "-p", '{"spec":{"runPolicy":"AlwaysOff"}}')
    daemon.wait_phase("live", "Stopped", 60)


def test_invalid_patch_changes_nothing(daemon):
    daemon.guest_disk("keep-root")
    path = daemon.write_vm("keep")
    daemon.start()
    daemon.wait_phase("keep", "Running")
    before = path.read_text()
    r = vmlet(daemon, "patch", "keep", "--type", "merge", "-p", '{"spec":{"cpu":{"cores":"two"}}}',
              check=False)
    assert r.returncode == 1
    assert 'spec.cpu.cores: expected an integer, found "two"' in r.stderr
    assert path.read_text() == before
    r = vmlet(daemon, "patch", "keep", "-p", "{not json", check=False)
    assert r.returncode == 1 and "-p:1:" in r.stderr
    assert daemon.vm("keep")["status"]["restartAwaitingChanges"] == []


def editor(tmp_path, name, replace_from, replace_to):
    """A scripted $EDITOR that rewrites the file like a person would."""
    script = tmp_path / name
    script.write_text("#!/usr/bin/python3\nimport sys\np = sys.argv[1]\n"
                      f"s = open(p).read().replace({replace_from!r}, {replace_to!r})\n"
                      "open(p, 'w').write(s)\n")
    script.chmod(0o755)
    return str(script)


def test_edit(daemon, tmp_path):
    import os
    daemon.guest_disk("ed-root")
    path = daemon.write_vm("ed")
    daemon.start()
    pid = daemon.wait_phase("ed", "Running")["status"]["pid"]

    def run_edit(ed):
        return subprocess.run([str(vmlet_binary()), "edit", "ed", "-c", str(daemon.conf)],
                              capture_output=True, text=True, env=dict(os.environ, EDITOR=ed))

    before = path.read_text()
    bad = run_edit(editor(tmp_path, "bad", '"cores" : 1', '"cores" : "two"'))
    assert bad.returncode == 1, bad.stdout
    assert 'spec.cpu.cores: expected an integer, found "two"' in bad.stderr
    assert "the edit was refused; the VM is unchanged" in bad.stderr
    assert path.read_text() == before

    same = run_edit(editor(tmp_path, "same", "no-such-text", "x"))
    assert same.returncode == 0 and same.stdout == "Edit cancelled, no changes made.\n"

    good = run_edit(editor(tmp_path, "good", '"cores" : 1', '"cores" : 2'))
    assert good.returncode == 0, good.stderr
    assert good.stdout == "virtualmachine.virtualization.deckhouse.io/ed edited\n"
    time.sleep(1)
    vm = daemon.vm("ed")
    assert vm["status"]["pid"] == pid
    assert vm["status"]["restartAwaitingChanges"] == [
        {"currentValue": 1, "desiredValue": 2, "operation": "replace", "path": "cpu.cores"}]


def test_approval_mode_change_takes_effect(daemon):
    """A VM with a change waiting under Manual approval: switching restartApprovalMode to
    Automatic (itself applied at once) makes vmletd restart it by itself, applying the
    change."""
    daemon.guest_disk("waiting-root")
    daemon.write_vm("waiting", terminationGracePeriodSeconds=5)
    daemon.start()
    pid = daemon.wait_phase("waiting", "Running")["status"]["pid"]
    assert guest_nproc(daemon, "waiting") == 1
    vmlet(daemon, "patch", "waiting", "--type", "merge", "-p", '{"spec":{"cpu":{"cores":2}}}')
    time.sleep(2)
    vm = daemon.vm("waiting")
    assert vm["status"]["pid"] == pid  # Manual: it waits
    assert [c["path"] for c in vm["status"]["restartAwaitingChanges"]] == ["cpu.cores"]
    vmlet(daemon, "patch", "waiting", "--type", "merge", "-p",
          '{"spec":{"disruptions":{"restartApprovalMode":"Automatic"}}}')
    vm = daemon.wait_new_pid("waiting", pid, 90)
    assert guest_nproc(daemon, "waiting") == 2
    assert vm["status"]["restartAwaitingChanges"] == []
    ops = daemon.request("GET", "/apis/virtualization.deckhouse.io/v1alpha2/namespaces/"
                         "default/virtualmachineoperations")[1]["items"]
    assert ops == []  # vmletd's own restart, not an operation someone created


def test_stopped_vm_starts_with_new_spec(daemon):
    """A change to a Stopped VM waits for nothing: no restartAwaitingChanges, NEED RESTART
    False, and the next start runs the new spec."""
    daemon.guest_disk("parked-root")
    daemon.write_vm("parked")
    daemon.start()
    daemon.wait_phase("parked", "Running")
    vmlet(daemon, "stop", "parked", "--force")
    daemon.wait_phase("parked", "Stopped", 60)
    vmlet(daemon, "patch", "parked", "--type", "merge", "-p", '{"spec":{"cpu":{"cores":2}}}')
    time.sleep(1)
    vm = daemon.vm("parked")
    assert vm["status"]["phase"] == "Stopped"  # a patch is no start
    assert vm["status"]["restartAwaitingChanges"] == []
    cond = {c["type"]: c for c in vm["status"]["conditions"]}
    assert cond["AwaitingRestartToApplyConfiguration"]["status"] == "False"
    wide = vmlet(daemon, "get", "parked", "-o", "wide").stdout.splitlines()[1].split()
    assert wide[:6] == ["parked", "Stopped", "2", "100%", "256Mi", "False"]
    vmlet(daemon, "start", "parked")
    vm = daemon.wait_phase("parked", "Running", 60)
    assert guest_nproc(daemon, "parked") == 2
    assert vm["status"]["restartAwaitingChanges"] == []
