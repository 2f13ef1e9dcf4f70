"""The source's QEMU dies after the commit was sent: the destination's answer decides, not
the exit. (A file of its own next to test_migration.py, whose `nodes` fixture it shares:
the VM here must not be test_migration.py's "stayer", which its last case moves away.)"""
import signal
import subprocess
import time

from daemon import qemu_pids
from test_migration import gone_from, nodes, running_on, uptime  # noqa: F401 (a fixture)


def kill_source_qemu_at_commit(a, b, name, vm):
    """Migrates name from a to b, freezes b's vmletd once the copy runs (so the commit
    gets no answer), waits for the source at Committing, then kills its QEMU (vm: its
    status before) and waits until the source has seen the exit. The caller thaws or
    kills b, whatever happens."""
    op = a.migrate(name)
    a.wait_progress(op, 10)
    b.proc.send_signal(signal.SIGSTOP)
    a.wait_for(lambda: a.journals(), 60, "the source at Committing",
               until=lambda js: any(j["step"] == "Committing" for j in js.values()))
    subprocess.run(["kill", "-9", str(vm["status"]["pid"])], check=True)
    a.wait_for(lambda: a.vm(name), 10, "the source saw its QEMU exit",
               until=lambda v: v and not v["status"].get("pid"))


def test_source_qemu_killed_after_the_commit_was_sent(nodes):  # noqa: F811
    """hv-2's vmletd is frozen as the source commits, so the commit waits for an answer;
    meanwhile the source's QEMU is killed. The source must neither tell hv-2 to abort nor
    start the VM again (hv-2 may be running it: two copies); once hv-2 answers, it owns
    the VM, which runs on there with the guest's uptime going on."""
    a, b, _, _ = nodes
    a.guest_disk("keeper-root")
    a.write_vm("keeper")
    vm = running_on(a, "keeper")
    con = a.console("keeper")
    before = uptime(con.wait_for("VMLET-TICK", 60))
    con.close()
    try:
        kill_source_qemu_at_commit(a, b, "keeper", vm)
        time.sleep(4)  # past the 1 s crash backoff: nothing may start the VM here
        now = a.vm("keeper")
        assert now["status"]["phase"] == "Migrating", now["status"]
        assert not qemu_pids(a.root), "the source started the VM again"
        steps = {j["step"] for j in a.journals().values() if j["name"] == "keeper"}
        assert "Committing" in steps and "Aborted" not in steps, steps
    finally:
        b.proc.send_signal(signal.SIGCONT)
    moved = running_on(b, "keeper", timeout=120)
    assert moved["status"]["nodeName"] == "hv-2"
    gone_from(a, "keeper")
    assert not qemu_pids(a.root)
    con = b.console("keeper")
    assert uptime(con.wait_for("VMLET-TICK", 30)) >= before
    con.close()


def test_source_qemu_killed_then_the_destination_gives_up(nodes):  # noqa: F811
    """As above, but hv-2 never gets the commit (killed while frozen, restarted): it
    aborts, and its definite "Aborted" is what lets the source act. No copy runs anywhere
    then, so the source's run policy starts the VM again from its disks."""
    a, b, _, _ = nodes
    a.guest_disk("lonely-root")
    a.write_vm("lonely")
    vm = running_on(a, "lonely")
    try:
        kill_source_qemu_at_commit(a, b, "lonely", vm)
        time.sleep(3)
        assert a.vm("lonely")["status"]["phase"] == "Migrating"
    finally:
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(timeout=30)
    b.start()
    again = a.wait_vm("lonely", 120, "running again on hv-1",
                      until=lambda v: v and v["status"]["phase"] == "Running"
                      and v["status"].get("pid") not in (None, vm["status"]["pid"]))
    assert again["status"]["nodeName"] == "hv-1"
    gone_from(b, "lonely")
    steps = {j["step"] for j in a.journals().values() if j["name"] == "lonely"}
    assert steps == {"Aborted"}, steps
