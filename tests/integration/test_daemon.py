"""vmletd with real QEMU and the test guest: phases, run policies, operations, restart
safety, broken drop-ins, API access control."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import SOURCE
from daemon import API, Daemon, Watch, qemu_pids
from vmrun import Console, uptime
from waiting import wait


@pytest.fixture
def daemon(test_guest, qemu_available):
    d = Daemon(test_guest / "guest.iso")
    yield d
    d.stop()


def console_of(d, name):
    return Console(str(d.root / "run" / "vms" / f"default.{name}" / "console.sock"))


def ready_condition(vm):
    return {c["type"]: c for c in vm["status"]["conditions"]}["Ready"]


def test_lifecycle_start_stop_restart(daemon):
    daemon.guest_disk("web-root")
    daemon.write_vm("web")
    daemon.start()
    vm = daemon.wait_phase("web", "Running")
    pid = vm["status"]["pid"]
    assert vm["status"]["nodeName"] == "test-node"
    phases = [t["phase"] for t in vm["status"]["stats"]["phasesTransitions"]]
    assert phases[-2:] == ["Starting", "Running"]
    assert "launchTimeDuration" in vm["status"]["stats"]
    # The guest really runs: its serial console on the VM's socket shows it booting.
    con = console_of(daemon, "web")
    try:
        con.wait_for("VMLET-TICK", 60)
    finally:
        con.close()

    status, op = daemon.operate("web", "Stop")
    assert status == 201 and op["status"]["phase"] == "InProgress"
    vm = daemon.wait_phase("web", "Stopped", 60)
    assert qemu_pids(daemon.root) == []
    _, ops = daemon.request("GET", f"{API}/namespaces/default/virtualmachineoperations")
    assert [o["status"]["phase"] for o in ops["items"]] == ["Completed"]

    # AlwaysOnUnlessStoppedManually: it stays stopped until started.
    time.sleep(2)
    assert daemon.vm("web")["status"]["phase"] == "Stopped"
    status, _ = daemon.operate("web", "Start")
    assert status == 201
    vm = daemon.wait_phase("web", "Running")
    pid2 = vm["status"]["pid"]
    assert pid2 != pid

    status, _ = daemon.operate("web", "Restart", force=True)
    assert status == 201
    daemon.wait_new_pid("web", pid2, 60)
    assert len(qemu_pids(daemon.root)) == 1


def test_agent_restart_keeps_vms(daemon):
    """Several running VMs; vmletd SIGKILLed (then SIGTERMed) and started again: every VM
    is the same QEMU, Running, never started twice, and its guest did not reboot: the
    uptime its serial console ticks keeps growing, with no second boot marker."""
    names = ("db", "web", "cache")
    for n in names:
        daemon.guest_disk(f"{n}-root")
        daemon.write_vm(n)
    daemon.start()
    pids, cons, first_tick, last = {}, {}, {}, {}
    try:
        for n in names:
            pids[n] = daemon.wait_phase(n, "Running")["status"]["pid"]
            cons[n] = console_of(daemon, n)
        for n in names:
            last[n] = uptime(cons[n].wait_for("VMLET-TICK", 90))
            first_tick[n] = len(cons[n].lines) - 1
        for sig in (signal.SIGKILL, signal.SIGTERM):
            for n in names:  # the freshest uptime before the agent goes away
                last[n] = uptime(cons[n].wait_for("VMLET-TICK", 30, start=len(cons[n].lines)))
            daemon.kill(sig)
            assert qemu_pids(daemon.root) == sorted(pids.values())  # VMs outlive the agent
            daemon.start()
            for n in names:
                vm = daemon.wait_phase(n, "Running", 20)
                assert vm["status"]["pid"] == pids[n]   # re-adopted, not restarted
                assert vm["status"]["restarts"] == 0
            assert qemu_pids(daemon.root) == sorted(pids.values())  # never started twice
            for n in names:
                now = uptime(cons[n].wait_for("VMLET-TICK", 30, start=len(cons[n].lines)))
                assert now > last[n], (n, now, last[n])  # a rebooted guest starts near 0
                last[n] = now
        for n in names:
            assert not any(line.startswith("VMLET-GUEST-BOOT-OK")
                           for line in cons[n].lines[first_tick[n]:]), n
    finally:
        for c in cons.values():
            c.close()
    # The re-adopted VMs are still fully managed: a stop goes through.
    for n in names:
        daemon.operate(n, "Stop", force=True)
    for n in names:
        daemon.wait_phase(n, "Stopped", 30)
    assert qemu_pids(daemon.root) == []


def test_crash_is_restarted(daemon):
    """QEMU killed: restarted under AlwaysOnUnlessStoppedManually and under AlwaysOn (a
    crash counted in restarts). Manual is in test_run_policies."""
    daemon.guest_disk("app-root")
    daemon.guest_disk("always-root")
    daemon.write_vm("app")
    daemon.write_vm("always", runPolicy="AlwaysOn")
    daemon.start()
    pids = {n: daemon.wait_phase(n, "Running")["status"]["pid"] for n in ("app", "always")}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    for name, pid in pids.items():
        vm = daemon.wait_vm(name, 60, f"Running as another QEMU than pid {pid}",
                            until=lambda vm: vm["status"]["phase"] == "Running"
                            and vm["status"]["pid"] != pid)
        assert vm["status"]["restarts"] == 1, name


def test_run_policies(daemon):
    for name in ("off", "manual"):
        daemon.guest_disk(f"{name}-root")
    daemon.write_vm("off", runPolicy="AlwaysOff")
    daemon.write_vm("manual", runPolicy="Manual")
    daemon.start()
    daemon.wait_phase("off", "Stopped", 10)
    daemon.wait_phase("manual", "Stopped", 10)
    time.sleep(1)
    assert qemu_pids(daemon.root) == []
    # Refused, and still an operation: Failed, with the reason (DVP's VMOP shape).
    status, op = daemon.operate("off", "Start")
    assert status == 201
    assert op["status"] == {"phase": "Failed",
                            "reason": "off: runPolicy AlwaysOff does not allow starting the VM"}
    _, ops = daemon.request("GET", f"{API}/namespaces/default/virtualmachineoperations")
    assert [(o["spec"]["virtualMachineName"], o["spec"]["type"], o["status"]["phase"])
            for o in ops["items"]] == [("off", "Start", "Failed")]
    assert daemon.vm("off")["status"]["phase"] == "Stopped"
    status, _ = daemon.operate("manual", "Start")
    assert status == 201
    daemon.wait_phase("manual", "Running")
    # Manual: a crash is not repaired.
    pid = daemon.vm("manual")["status"]["pid"]
    os.kill(pid, signal.SIGKILL)
    vm = daemon.wait_phase("manual", "Stopped", 20)
    cond = {c["type"]: c for c in vm["status"]["conditions"]}
    assert "QEMU exited unexpectedly" in cond["Running"]["message"]
    time.sleep(2)
    assert daemon.vm("manual")["status"]["phase"] == "Stopped"


def test_broken_dropin_only_affects_its_vm(daemon):
    daemon.guest_disk("good-root")
    daemon.write_vm("good")
    (daemon.etc / "vms.d" / "broken.json").write_text('{"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine", "metadata": {"name": "broken"}, "spec": {"cpu": {"cores": "two"}}}')
    daemon.write_vm("lost", blockDeviceRefs=[{"kind": "VirtualDisk", "name": "nowhere"}])
    daemon.start()
    daemon.wait_phase("good", "Running")
    broken = daemon.wait_phase("broken", "Pending", 10)
    ready = {c["type"]: c for c in broken["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "broken.json: spec.cpu.cores: expected an integer, found \"two\"" in ready["message"]
    lost = daemon.wait_phase("lost", "Pending", 10)
    ready = {c["type"]: c for c in lost["status"]["conditions"]}["Ready"]
    assert ready["reason"] == "DependencyNotReady"
    assert 'spec.blockDeviceRefs[0]: VirtualDisk "nowhere" not found' in ready["message"]
    # The missing disk appears: the Pending VM starts on its own (inotify).
    daemon.guest_disk("nowhere")
    daemon.wait_phase("lost", "Running", 60)
    assert daemon.vm("good")["status"]["phase"] == "Running"


def test_dropin_added_and_removed(daemon):
    """A drop-in written into vms.d of a running vmletd starts its VM (inotify); removing
    it goes through Terminating (seen on the watch stream) and forgets the VM."""
    daemon.guest_disk("tmp-root")
    daemon.start()
    assert daemon.vm("tmp") is None
    path = daemon.write_vm("tmp", terminationGracePeriodSeconds=1)
    daemon.wait_phase("tmp", "Running")
    watch = Watch(daemon)
    try:
        # The ADDED event of the current state.
        wait(lambda: watch.phases("tmp"), 60, "an event about tmp on the watch")
        path.unlink()
        phases = wait(lambda: watch.phases("tmp"), 30, "tmp DELETED on the watch",
                      until=lambda phases: ("DELETED", None) in phases)
    finally:
        watch.close()
    assert ("MODIFIED", "Terminating") in phases
    assert phases.index(("MODIFIED", "Terminating")) < phases.index(("DELETED", None))
    assert daemon.vm("tmp") is None
    assert qemu_pids(daemon.root) == []
    assert not (daemon.root / "state" / "vms" / "default.tmp.json").exists()
    assert not (daemon.root / "run" / "vms" / "default.tmp").exists()  # cleaned up


def test_graceful_stop_uses_acpi(daemon):
    """A Stop without --force presses the ACPI power button and waits: the guest sees it
    (its marker), powers off, and the Stop completes as the guest's own power-off, long
    before the grace period (600 s here) would have stopped QEMU."""
    daemon.guest_disk("gentle-root")
    daemon.write_vm("gentle", terminationGracePeriodSeconds=600)
    daemon.start()
    daemon.wait_phase("gentle", "Running")
    con = console_of(daemon, "gentle")
    try:
        con.wait_for("VMLET-TICK", 90)  # the guest watches its power button before ticking
        status, op = daemon.operate("gentle", "Stop")
        assert status == 201 and op["status"]["phase"] == "InProgress"
        con.wait_for("VMLET-ACPI-POWERDOWN", 60)
    finally:
        con.close()
    vm = daemon.wait_phase("gentle", "Stopped", 120)
    _, ops = daemon.request("GET", f"{API}/namespaces/default/virtualmachineoperations")
    assert ops["items"][-1]["status"] == {
        "phase": "Completed", "reason": "the guest powered off after the ACPI power button"}
    phases = [t["phase"] for t in vm["status"]["stats"]["phasesTransitions"]]
    assert phases[-3:] == ["Running", "Stopping", "Stopped"]
    running = {c["type"]: c for c in vm["status"]["conditions"]}["Running"]
    assert "message" not in running  # not "did not power off within ..."


def test_api_refuses_other_users(daemon):
    daemon.start()
    status, body = daemon.request("GET", "/healthz")
    assert status == 200
    os.chmod(daemon.root, 0o755)
    os.chmod(daemon.root / "run", 0o755)
    os.chmod(daemon.socket, 0o666)  # let nobody reach the socket: the check is SO_PEERCRED
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "/usr/bin/python3", "-c",
                        "import socket,sys; s=socket.socket(socket.AF_UNIX)\n"
                        f"s.connect({daemon.socket!r})\n"
                        "s.sendall(b'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
                        "data = b''\n"
                        "while chunk := s.recv(4096): data += chunk\n"
                        "print(data.decode())"], capture_output=True, text=True)
    assert "403 Forbidden" in r.stdout, r.stdout + r.stderr
    assert "uid 65534 is not allowed to use vmletd" in r.stdout


def test_apply_validates_before_writing(daemon):
    daemon.start()
    bad = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachine",
           "metadata": {"name": "new"}, "spec": {"virtualMachineClassName": "generic",
                                                 "cpu": {"cores": 1, "coreFraction": "7%"},
                                                 "memory": {"size": "1Gi"},
                                                 "blockDeviceRefs": [{"kind": "VirtualDisk",
                                                                      "name": "x"}]}}
    status, err = daemon.request("PUT", f"{API}/namespaces/default/virtualmachines/new", bad)
    # Schema errors are refused; coreFraction vs class is a resolution problem, accepted
    # and reported as Pending, like a missing disk.
    assert status == 200
    bad["spec"]["cpu"]["cores"] = "one"
    status, err = daemon.request("PUT", f"{API}/namespaces/default/virtualmachines/new", bad)
    assert status == 422
    assert 'spec.cpu.cores: expected an integer, found "one"' in err["message"]
    vm = daemon.wait_phase("new", "Pending", 10)
    ready = {c["type"]: c for c in vm["status"]["conditions"]}["Ready"]
    assert '"7%" is not allowed by class "generic"' in ready["message"]


def expected_meta_data(name, user_data, ns="default"):
    """NoCloud meta-data as vmletd writes it, computed here independently: instance-id is
    the name and the first 16 hex digits of sha256(ns "/" name NUL user-data)."""
    digest = hashlib.sha256(f"{ns}/{name}".encode() + b"\0" + user_data.encode()).hexdigest()
    return f"instance-id: {name}-{digest[:16]}\nlocal-hostname: {name}\n"


def cidata_file(con, name):
    return "\n".join(con.section(f"VMLET-CIDATA-BEGIN {name}", f"VMLET-CIDATA-END {name}")) + "\n"


def test_guest_poweroff_follows_run_policy(daemon):
    """The guest powers itself off (a test control in its cloud-init user-data, built into
    the cidata ISO in process): AlwaysOnUnlessStoppedManually and Manual count it as a
    manual stop, AlwaysOn starts the VM again."""
    for name in ("quiet", "always", "manual"):
        daemon.guest_disk(f"{name}-root")
    user_data = "#cloud-config\n#vmlet: poweroff-after 2\n"
    daemon.write_vm("quiet", provisioning={"type": "UserData", "userData": user_data})
    daemon.write_vm("always", runPolicy="AlwaysOn",
                    provisioning={"type": "UserData", "userData": user_data})
    daemon.write_vm("manual", runPolicy="Manual",
                    provisioning={"type": "UserData", "userData": user_data})
    daemon.start()
    con = console_of(daemon, "quiet")
    try:
        daemon.wait_phase("quiet", "Running")
        # The guest read the seed vmletd built: the spec's userData and the meta-data for
        # this VM, byte for byte.
        con.wait_for("VMLET-CIDATA-OK", 60)
        assert cidata_file(con, "user-data") == user_data
        assert cidata_file(con, "meta-data") == expected_meta_data("quiet", user_data)
        con.wait_for("VMLET-POWEROFF", 30)
    finally:
        con.close()
    vm = daemon.wait_phase("quiet", "Stopped", 30)
    cond = {c["type"]: c for c in vm["status"]["conditions"]}["Running"]
    assert cond["message"] == "the guest powered off"
    time.sleep(3)
    assert daemon.vm("quiet")["status"]["phase"] == "Stopped"  # not started again

    # AlwaysOn: powered off, started again (a new QEMU), with no crash counted.
    first = daemon.wait_phase("always", "Running")["status"]["pid"]
    vm = daemon.wait_vm("always", 90, f"Running as another QEMU than pid {first}", 0.2,
                        until=lambda vm: vm["status"]["phase"] == "Running"
                        and vm["status"]["pid"] != first)
    assert vm["status"]["restarts"] == 0
    phases = [t["phase"] for t in vm["status"]["stats"]["phasesTransitions"]]
    assert "Stopped" in phases[phases.index("Running"):]

    # Manual: started by an operation; the guest's power-off leaves it Stopped.
    assert daemon.vm("manual")["status"]["phase"] == "Stopped"
    status, _ = daemon.operate("manual", "Start")
    assert status == 201
    daemon.wait_phase("manual", "Running")
    con = console_of(daemon, "manual")
    try:
        con.wait_for("VMLET-POWEROFF", 90)
    finally:
        con.close()
    vm = daemon.wait_phase("manual", "Stopped", 30)
    cond = {c["type"]: c for c in vm["status"]["conditions"]}["Running"]
    assert cond["message"] == "the guest powered off" and vm["status"]["restarts"] == 0
    time.sleep(3)
    assert daemon.vm("manual")["status"]["phase"] == "Stopped"
    assert "pid" not in daemon.vm("manual")["status"]


def test_node_selector_mismatch_stays_pending(daemon):
    daemon.guest_disk("picky-root")
    daemon.write_vm("picky", nodeSelector={"disktype": "hdd"})
    daemon.start()
    vm = daemon.wait_phase("picky", "Pending", 10)
    ready = {c["type"]: c for c in vm["status"]["conditions"]}["Ready"]
    assert ready["message"] == ("this node does not match: spec.nodeSelector: node has "
                                "disktype=ssd, the VM needs disktype=hdd")
    assert qemu_pids(daemon.root) == []


def test_crash_loop_backs_off(daemon):
    """QEMU that cannot run (a corrupt disk image) is restarted with growing delays, and
    the reason is shown."""
    path = daemon.root / "state" / "disks" / "default" / "bad-root.qcow2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"QFI\xfb" + b"\x00" * 4092)  # a qcow2 magic and nothing sane after it
    (daemon.etc / "disks.d" / "bad-root.json").write_text(json.dumps({
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
        "metadata": {"name": "bad-root"}}))
    daemon.write_vm("bad")
    daemon.start()
    seen = []  # (restarts, when first seen)

    def restarts():
        vm = daemon.vm("bad")
        r = vm["status"]["restarts"]
        if not seen or seen[-1][0] != r:
            seen.append((r, time.monotonic()))
        return vm
    vm = daemon.wait_for(restarts, 20, "vm bad restarted 3 times", 0.05,
                         until=lambda vm: vm["status"]["restarts"] >= 3)
    cond = {c["type"]: c for c in vm["status"]["conditions"]}["Running"]
    assert cond["reason"] == "CrashLoopBackOff"
    assert cond["message"].startswith("QEMU exited unexpectedly (exit status 1)")
    # Delays double: the gap before the third restart is longer than before the second.
    times = {r: t for r, t in seen}
    assert times[3] - times[2] > times[2] - times[1]
    log = (daemon.root / "run" / "vms" / "default.bad" / "qemu.log").read_text()
    assert "Unsupported qcow2 version" in log  # QEMU's own reason is kept for the operator


def test_systemd_notify(daemon):
    """Type=notify: READY=1 once serving, STATUS= with the VM counts, STOPPING=1."""
    sock_path = str(daemon.root / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(20)
    os.environ["NOTIFY_SOCKET"] = sock_path
    try:
        daemon.start()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    got = []
    while "READY=1" not in got or not any(m.startswith("STATUS=") for m in got):
        got.append(sock.recv(4096).decode())
    assert "STATUS=0 VMs" in got
    daemon.kill(signal.SIGTERM)
    while "STOPPING=1" not in got:
        got.append(sock.recv(4096).decode())
    sock.close()


def write_secret(daemon, name, type_, data, mode=0o600):
    import base64
    path = daemon.etc / "secrets.d" / f"{name}.json"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": type_,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}))
    os.chmod(path, mode)
    return path


CLOUD_INIT = "provisioning.virtualization.deckhouse.io/cloud-init"
SYSPREP = "provisioning.virtualization.deckhouse.io/sysprep"


def test_provisioning_from_secrets(daemon):
    """UserDataRef: the guest reads the Secret's decoded userData and the VM's meta-data;
    SysprepRef: the guest sees both answer files on their own CD. Secret values never appear
    in the API."""
    daemon.guest_disk("fromsecret-root")
    daemon.guest_disk("win-root")
    # The seed's cloud-config verbatim, this time from a Secret.
    seed = json.loads((SOURCE / "tests" / "golden" / "seed-linux-vm.json").read_text())
    user_data = seed["spec"]["provisioning"]["userData"]
    marker = "fPmUsbjAuA7mnQNTajQM6Clhes"  # from its password hash: must never leak
    write_secret(daemon, "cloud-init-example", CLOUD_INIT, {"userData": user_data})
    unattend = "<unattend xmlns=\"urn:schemas-microsoft-com:unattend\"/>\n"
    autounattend = "<unattend xmlns=\"urn:schemas-microsoft-com:unattend\"><!--auto--></unattend>\n"
    write_secret(daemon, "sysprep-example", SYSPREP,
                 {"Unattend.XML": unattend, "AutoUnattend.xml": autounattend})
    daemon.write_vm("fromsecret", provisioning={
        "type": "UserDataRef", "userDataRef": {"kind": "Secret", "name": "cloud-init-example"}})
    daemon.write_vm("win", provisioning={
        "type": "SysprepRef", "sysprepRef": {"kind": "Secret", "name": "sysprep-example"}})
    daemon.start()
    # Attach both consoles at once: serial output with nobody attached is dropped, and the
    # markers below are printed once per boot.
    daemon.wait_phase("fromsecret", "Running", 60)
    con = console_of(daemon, "fromsecret")
    daemon.wait_phase("win", "Running", 60)
    win = console_of(daemon, "win")
    try:
        con.wait_for("VMLET-CIDATA-OK", 90)
        got = cidata_file(con, "user-data")
        meta = cidata_file(con, "meta-data")
        # The guest scans every ISO9660 volume for answer files, then starts ticking: by
        # the first tick, every file it found has been printed.
        win.wait_for("VMLET-TICK", 90)
        sysprep = sorted(l for l in win.lines if l.startswith("VMLET-SYSPREP-FILE"))
    finally:
        con.close()
        win.close()
    assert got == user_data
    assert meta == expected_meta_data("fromsecret", user_data)

    def line(name, text):
        sha = hashlib.sha256(text.encode()).hexdigest()
        return f"VMLET-SYSPREP-FILE {name} {len(text)} {sha}"
    # Exactly the Secret's two keys, under their lower-case names, nothing else.
    assert sysprep == sorted([line("autounattend.xml", autounattend),
                              line("unattend.xml", unattend)])
    # The seed ISO is private to the VM's QEMU.
    iso = daemon.root / "run" / "vms" / "default.fromsecret" / "cidata.iso"
    assert oct(iso.stat().st_mode & 0o777) == "0o600"
    _, listing = daemon.request("GET", "/apis/virtualization.deckhouse.io/v1alpha2/virtualmachines")
    assert marker not in json.dumps(listing)
    assert marker not in daemon.log.read_text()

    # A changed Secret is a change awaiting a restart (its content is never shown).
    write_secret(daemon, "cloud-init-example", CLOUD_INIT, {"userData": "#cloud-config\n"})
    daemon.wait_vm("fromsecret", 10, "with a change awaiting a restart",
                   until=lambda vm: vm["status"]["restartAwaitingChanges"])
    assert daemon.vm("fromsecret")["status"]["restartAwaitingChanges"] == [{
        "currentValue": "Secret cloud-init-example as of the last start",
        "desiredValue": "Secret cloud-init-example as it is now",
        "operation": "replace", "path": "provisioning.userDataRef"}]
    pid = daemon.vm("fromsecret")["status"]["pid"]
    daemon.operate("fromsecret", "Restart", force=True)
    vm = daemon.wait_new_pid("fromsecret", pid, 60)
    assert vm["status"]["restartAwaitingChanges"] == []


def wait_reason(daemon, name, expected, timeout=20):
    """The VM's Ready condition once it says exactly expected (drop-ins written one after
    the other pass through other reasons first)."""
    return daemon.wait_vm(name, timeout, f"Ready message {expected!r}",
                          until=lambda vm: vm and ready_condition(vm).get("message") == expected)


def test_bad_provisioning_inputs_leave_only_their_vm_pending(daemon):
    """Each bad input, added to a running vmletd: its VM Pending with exactly its reason,
    while a healthy VM on the same daemon keeps running, untouched (same QEMU, no phase
    change). Secrets are checked wherever they are found, before they are decoded."""
    daemon.guest_disk("steady-root")
    daemon.guest_disk("bad-root")  # shared: none of the bad VMs ever starts
    daemon.guest_disk("open-root")
    daemon.write_vm("steady")
    daemon.start()
    steady = daemon.wait_phase("steady", "Running")
    pid = steady["status"]["pid"]
    transitions = steady["status"]["stats"]["phasesTransitions"]

    secrets_d, vms_d = daemon.etc / "secrets.d", daemon.etc / "vms.d"
    garbage = {"userData": "not base64!"}

    def raw_secret(path, name, data, mode):
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret",
                                    "metadata": {"name": name}, "type": CLOUD_INIT,
                                    "data": data}))
        os.chmod(path, mode)

    write_secret(daemon, "typed", SYSPREP, {"userData": "#cloud-config\n"})
    write_secret(daemon, "nokey", CLOUD_INIT, {"user-data": "#cloud-config\n"})
    raw_secret(secrets_d / "garbled.json", "garbled", garbage, 0o600)
    # World-readable and bad base64: the mode is the problem reported.
    raw_secret(secrets_d / "open.json", "open", garbage, 0o644)
    # Private, but owned by someone else than root or vmletd.
    write_secret(daemon, "owned", CLOUD_INIT, {"userData": "#cloud-config\n"})
    os.chown(secrets_d / "owned.json", 65534, 65534)
    ref = {"blockDeviceRefs": [{"kind": "VirtualDisk", "name": "bad-root"}]}
    for vm, secret in (("typed", "typed"), ("nokey", "nokey"), ("nosecret", "missing"),
                       ("garbled", "garbled"), ("open", "open"), ("owned", "owned")):
        daemon.write_vm(vm, provisioning={"type": "UserDataRef",
                                          "userDataRef": {"kind": "Secret", "name": secret}},
                        **ref)
    daemon.write_vm("big", provisioning={"type": "UserData", "userData": "#" * 2049}, **ref)
    daemon.write_vm("both", provisioning={"type": "UserData", "userData": "#cloud-config\n",
                                          "sysprepRef": {"kind": "Secret", "name": "typed"}},
                    **ref)
    # A Secret in a vms.d List is checked like one in secrets.d: this List is 0644.
    listed = vms_d / "listed.json"
    listed.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "listed-secret"},
         "type": CLOUD_INIT, "data": garbage},
        json.loads(daemon.write_vm("listed", provisioning={
            "type": "UserDataRef", "userDataRef": {"kind": "Secret", "name": "listed-secret"}},
            **ref).read_text())]}))
    os.chmod(listed, 0o644)

    field = "spec.provisioning.userDataRef"
    mode_644 = "mode 0644 lets others read a Secret; expected 0600 or 0400 (chmod 600)"
    expected = {
        "typed": f'{field}: Secret "typed" has type "{SYSPREP}", expected "{CLOUD_INIT}"',
        "nokey": f'{field}: Secret "nokey" has no key "userData"',
        "nosecret": f'{field}: Secret "missing" not found in namespace "default"',
        "garbled": (f'{field}: Secret "garbled" was refused: {secrets_d}/garbled.json: '
                    "data.userData: expected base64 (RFC 4648, padded), found invalid base64"),
        "open": f'{field}: Secret "open" was refused: {secrets_d}/open.json: {mode_644}',
        "owned": (f'{field}: Secret "owned" was refused: {secrets_d}/owned.json: owned by uid '
                  "65534; expected root or vmletd's user to own a Secret (chown)"),
        "listed": f'{field}: Secret "listed-secret" was refused: {listed}: {mode_644}',
        "big": (f"{vms_d}/big.json: spec.provisioning.userData: expected at most 2048 bytes, "
                "found 2049"),
        "both": (f"{vms_d}/both.json: spec.provisioning.sysprepRef: must not be set when type "
                 "is UserData (provisioning sources are mutually exclusive)"),
    }
    for name, reason in expected.items():
        vm = wait_reason(daemon, name, reason)
        assert vm["status"]["phase"] == "Pending", name
        ready = {c["type"]: c for c in vm["status"]["conditions"]}["Ready"]
        assert ready["reason"] == ("InvalidSpec" if name in ("big", "both")
                                   else "DependencyNotReady"), name
    # The healthy VM never noticed.
    vm = daemon.vm("steady")
    assert vm["status"]["phase"] == "Running" and vm["status"]["pid"] == pid
    assert vm["status"]["stats"]["phasesTransitions"] == transitions
    assert qemu_pids(daemon.root) == [pid]
    # Nothing secret leaked: the undecodable values are never quoted.
    _, listing = daemon.request("GET", f"{API}/virtualmachines")
    assert "not base64!" not in json.dumps(listing)
    assert "not base64!" not in daemon.log.read_text()
    # Fixed by hand: a valid Secret in a private file is enough, the VM starts by itself.
    write_secret(daemon, "open", CLOUD_INIT, {"userData": "#cloud-config\n"})
    daemon.write_vm("open", provisioning={"type": "UserDataRef",
                                          "userDataRef": {"kind": "Secret", "name": "open"}})
    daemon.wait_phase("open", "Running", 60)
    assert daemon.vm("steady")["status"]["pid"] == pid


def test_unreadable_secret_file(daemon):
    """vmletd without CAP_DAC_OVERRIDE (a stricter unit than systemd/vmletd.service) cannot
    open a root Secret of mode 0000: the VM says so; once the file is readable, it starts."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities with setpriv")
    daemon.guest_disk("locked-root")
    path = write_secret(daemon, "locked", CLOUD_INIT, {"userData": "#cloud-config\n"}, mode=0)
    daemon.write_vm("locked", provisioning={"type": "UserDataRef",
                                            "userDataRef": {"kind": "Secret", "name": "locked"}})
    # Without CAP_DAC_OVERRIDE vmletd can neither reach files it gave to vmlet-qemu nor make
    # cgroups in v1 roots of mode 0555 (the unit keeps that capability for these reasons):
    # here QEMU keeps the agent's uid and cgroup instead.
    with open(daemon.conf, "a") as conf:
        conf.write("[qemu]\nuser=\n[resources]\ncgroup-manager=none\n")
    daemon.start(wrapper=["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                          "--inh-caps=-all"])
    vm = wait_reason(daemon, "locked", 'spec.provisioning.userDataRef: Secret "locked" was '
                                       f"refused: {path}: cannot open: Permission denied")
    assert vm["status"]["phase"] == "Pending"
    os.chmod(path, 0o600)
    daemon.wait_phase("locked", "Running", 60)


def test_running_vm_survives_a_broken_edit(daemon):
    """Breaking a running VM's drop-in by hand reports the problem but never stops it."""
    daemon.guest_disk("steady-root")
    path = daemon.write_vm("steady")
    daemon.start()
    pid = daemon.wait_phase("steady", "Running")["status"]["pid"]
    good = path.read_text()
    path.write_text(good.replace('"cores": 1', '"cores": 0'))
    vm = daemon.wait_vm("steady", 10, "Ready False",
                        until=lambda vm: ready_condition(vm)["status"] == "False")
    assert ("spec.cpu.cores: expected an integer from 1 to 248, found 0"
            in ready_condition(vm)["message"])
    assert vm["status"]["phase"] == "Running" and vm["status"]["pid"] == pid
    path.write_text(good)
    daemon.wait_vm("steady", 10, "Ready True",
                   until=lambda vm: ready_condition(vm)["status"] == "True")
    assert daemon.vm("steady")["status"]["pid"] == pid


def test_record_write_failure_is_reported(daemon):
    """When the VM's record cannot be written, the VM still runs and says so (a restarted
    agent could not re-adopt it from a stale record); the next good write clears it."""
    daemon.guest_disk("disk-full-root")
    daemon.write_vm("disk-full")
    vms = daemon.root / "state" / "vms"
    vms.parent.mkdir(parents=True, exist_ok=True)
    vms.write_text("not a directory")  # every record write now fails with ENOTDIR
    daemon.start()
    vm = daemon.wait_phase("disk-full", "Running")
    cond = {c["type"]: c for c in vm["status"]["conditions"]}
    assert cond["StatePersisted"]["status"] == "False"
    assert cond["StatePersisted"]["reason"] == "WriteFailed"
    assert str(vms) in cond["StatePersisted"]["message"]
    assert cond["Ready"]["status"] == "True"  # not mistaken for a missing dependency
    vms.unlink()
    daemon.operate("disk-full", "Stop", force=True)
    vm = daemon.wait_phase("disk-full", "Stopped", 30)
    assert "StatePersisted" not in {c["type"] for c in vm["status"]["conditions"]}
    assert (vms / "default.disk-full.json").exists()


def raw_request(d, head):
    """Sends head (request line and headers, no body) on vmletd's socket and returns the
    status line, or "" when vmletd closed the connection, waiting at most 5 s: a server
    that waited for the body would do neither."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(d.socket)
    try:
        s.sendall(head.encode())
        return s.recv(4096).decode().split("\r\n")[0]
    finally:
        s.close()


def test_request_bodies_are_bounded_before_they_are_read(daemon):
    """A body over the API's 1 MiB bound is refused from its Content-Length alone (here a
    1 GiB one that never comes), and a body of no stated length (chunked) is refused too:
    vmletd never buffers what it would refuse. A client that asked `Expect: 100-continue`
    gets the status; any other has its connection cut (libsoup would read the body)."""
    daemon.start()
    path = f"{API}/namespaces/default/virtualmachines/x"
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    big = f"Content-Length: {1 << 30}\r\n"
    line = raw_request(daemon, head + big + "Expect: 100-continue\r\n\r\n")
    assert line == "HTTP/1.1 413 Request Entity Too Large", line
    assert raw_request(daemon, head + big + "\r\n") in ("", line)
    chunked = "Transfer-Encoding: chunked\r\n"
    line = raw_request(daemon, head + chunked + "Expect: 100-continue\r\n\r\n")
    assert line == "HTTP/1.1 411 Length Required", line
    assert raw_request(daemon, head + chunked + "\r\n") in ("", line)
    # An ordinary request still works on the same server.
    assert daemon.request("GET", "/healthz")[0] == 200
