/* The VM's job slot (agent/runtime/vm-job.c) and phase table (vm-phase.c): the tables
 * themselves, and what a request does to the job in progress on a running node
 * (runtime-harness.h), with replies withheld to hold a VM in the middle of a job. */
#include <string.h>
#include <unistd.h>

#include "runtime-harness.h"
/* A test may look at the tables behind the VM object. */
#include "vm-private.h"

static const char *const probe[] = {"qom-list", "query-named-block-nodes", NULL};

/* ---- the tables, as data ---- */

/* Columns: the slot: empty, a start, a stop for a user, a restart, the guest's power-off,
 * a deletion, an outgoing and an incoming migration. B begin, J join, T retarget, P
 * preempt, R refuse, C cancel the migration first. */
static const struct {
  VmRequest request;
  const char *rules;
} job_table[] = {
    {VM_REQ_START, "BJTJTRRR"},
    {VM_REQ_STOP, "BPJTTJCR"},
    {VM_REQ_RESTART, "BPTJTRRR"},
    {VM_REQ_DELETE, "BPTTTJCC"},
    {VM_REQ_GUEST_OFF, "BPJJJJCJ"},
    {VM_REQ_MIGRATE, "BRRRRRRR"},
};

static const VmJob slots[] = {
    {VM_JOB_NONE, VM_STOP_USER, FALSE},    {VM_JOB_START, VM_STOP_USER, FALSE},
    {VM_JOB_STOP, VM_STOP_USER, FALSE},    {VM_JOB_STOP, VM_STOP_RESTART, FALSE},
    {VM_JOB_STOP, VM_STOP_GUEST, FALSE},   {VM_JOB_STOP, VM_STOP_DELETE, FALSE},
    {VM_JOB_MIGRATE_OUT, VM_STOP_USER, FALSE}, {VM_JOB_MIGRATE_IN, VM_STOP_USER, FALSE},
};

static char rule_letter(VmJobRule r)
{
  switch (r) {
  case VM_RULE_BEGIN:
    return 'B';
  case VM_RULE_JOIN:
    return 'J';
  case VM_RULE_RETARGET:
    return 'T';
  case VM_RULE_PREEMPT:
    return 'P';
  case VM_RULE_REFUSE:
    return 'R';
  case VM_RULE_CANCEL:
    return 'C';
  }
  return '?';
}

static void test_job_rules(void)
{
  for (gsize i = 0; i < G_N_ELEMENTS(job_table); i++) {
    char got[G_N_ELEMENTS(slots) + 1] = {0};
    for (gsize s = 0; s < G_N_ELEMENTS(slots); s++) {
      got[s] = rule_letter(vm_job_rule(&slots[s], job_table[i].request));
      /* force changes how a stop goes, never what the table says. */
      VmJob forced = slots[s];
      forced.force = TRUE;
      g_assert_cmpint(vm_job_rule(&forced, job_table[i].request), ==,
                      vm_job_rule(&slots[s], job_table[i].request));
    }
    g_assert_cmpstr(got, ==, job_table[i].rules);
  }
  /* The table's promises, said once more as rules: a deletion is never refused; a
   * migration begins only from an empty slot; besides that, only a deletion or a migration
   * refuses; only a start is preempted; only a migration is cancelled; a stop asked of its
   * own kind joins. */
  for (gsize s = 0; s < G_N_ELEMENTS(slots); s++) {
    g_assert_cmpint(vm_job_rule(&slots[s], VM_REQ_DELETE), !=, VM_RULE_REFUSE);
    gboolean migrating = slots[s].kind == VM_JOB_MIGRATE_OUT || slots[s].kind == VM_JOB_MIGRATE_IN;
    for (gsize i = 0; i < G_N_ELEMENTS(job_table); i++) {
      VmJobRule r = vm_job_rule(&slots[s], job_table[i].request);
      if (r == VM_RULE_REFUSE && job_table[i].request != VM_REQ_MIGRATE)
        g_assert_true((slots[s].kind == VM_JOB_STOP && slots[s].intent == VM_STOP_DELETE) ||
                      migrating);
      if (job_table[i].request == VM_REQ_MIGRATE)
        g_assert_cmpint(r, ==, slots[s].kind == VM_JOB_NONE ? VM_RULE_BEGIN : VM_RULE_REFUSE);
      if (r == VM_RULE_CANCEL)
        g_assert_true(migrating);
      if (r == VM_RULE_PREEMPT)
        g_assert_cmpint(slots[s].kind, ==, VM_JOB_START);
      if (slots[s].kind == VM_JOB_STOP && job_table[i].request != VM_REQ_MIGRATE &&
          vm_job_intent_of(job_table[i].request) == slots[s].intent)
        g_assert_cmpint(r, ==, VM_RULE_JOIN);
    }
  }
  g_assert_cmpint(vm_job_intent_of(VM_REQ_STOP), ==, VM_STOP_USER);
  g_assert_cmpint(vm_job_intent_of(VM_REQ_START), ==, VM_STOP_RESTART);
  g_assert_cmpint(vm_job_intent_of(VM_REQ_RESTART), ==, VM_STOP_RESTART);
  g_assert_cmpint(vm_job_intent_of(VM_REQ_DELETE), ==, VM_STOP_DELETE);
  g_assert_cmpint(vm_job_intent_of(VM_REQ_GUEST_OFF), ==, VM_STOP_GUEST);
}

/* The slot as the record keeps it: every name back to its job, unknown names refused. */
static void test_job_names(void)
{
  for (gsize s = 0; s < G_N_ELEMENTS(slots); s++) {
    VmJob j = slots[s], back = {VM_JOB_START, VM_STOP_DELETE, FALSE};
    gboolean stop = j.kind == VM_JOB_STOP;
    g_assert_true(vm_job_parse(vm_job_kind_name(j.kind),
                               stop ? vm_stop_intent_name(j.intent) : NULL, stop, &back));
    g_assert_cmpint(back.kind, ==, j.kind);
    if (stop) {
      g_assert_cmpint(back.intent, ==, j.intent);
      g_assert_true(back.force);
    }
  }
  VmJob untouched = {VM_JOB_START, VM_STOP_GUEST, TRUE}, j = untouched;
  g_assert_false(vm_job_parse("Migrate", NULL, FALSE, &j));
  g_assert_false(vm_job_parse(NULL, NULL, FALSE, &j));
  g_assert_false(vm_job_parse("Stop", "Hibernate", FALSE, &j));
  g_assert_false(vm_job_parse("Stop", NULL, FALSE, &j));
  g_assert_true(memcmp(&j, &untouched, sizeof(j)) == 0);
}

/* Rows: from; columns: to, in the order of VmPhase (Pending Starting Running Stopping
 * Stopped Terminating). */
static const char *const phase_table[] = {
    [VM_PHASE_PENDING] = "010011",
    [VM_PHASE_STARTING] = "001111",
    [VM_PHASE_RUNNING] = "000111",
    [VM_PHASE_STOPPING] = "000011",
    [VM_PHASE_STOPPED] = "110001",
    [VM_PHASE_TERMINATING] = "000000",
};

static void test_phase_table(void)
{
  for (guint from = 0; from <= VM_PHASE_TERMINATING; from++) {
    char got[VM_PHASE_TERMINATING + 2] = {0};
    for (guint to = 0; to <= VM_PHASE_TERMINATING; to++)
      got[to] = vm_phase_can_move(from, to) ? '1' : '0';
    g_test_message("%s", vm_phase_name(from));
    g_assert_cmpstr(got, ==, phase_table[from]);
    VmPhase back = VM_PHASE_TERMINATING;
    g_assert_true(vm_phase_from_name(vm_phase_name(from), &back));
    g_assert_cmpint(back, ==, from);
    /* Every phase but the last can be deleted; none moves to itself. */
    g_assert_true(vm_phase_can_move(from, VM_PHASE_TERMINATING) == (from != VM_PHASE_TERMINATING));
    g_assert_false(vm_phase_can_move(from, from));
  }
  /* A stop never turns back into a run: only Stopped (or a deletion) follows it. */
  g_assert_false(vm_phase_can_move(VM_PHASE_STOPPING, VM_PHASE_RUNNING));
  g_assert_false(vm_phase_can_move(VM_PHASE_STOPPING, VM_PHASE_STARTING));
  VmPhase p = VM_PHASE_RUNNING;
  g_assert_false(vm_phase_from_name("Paused", &p));
  g_assert_false(vm_phase_from_name(NULL, &p));
  g_assert_cmpint(p, ==, VM_PHASE_RUNNING);
}

/* ---- the slot on a running node ---- */

/* A Stop while QEMU is still starting: quit at once (the guest is not running yet, there
 * is no one to press the button for), and the Start did not happen. */
static void test_stop_while_starting(void)
{
  g_autoptr(RtNode) n = rt_node_new();
  rt_write_vm(n, "a", "\"runPolicy\": \"Manual\"");
  FakeQmp *fq = rt_fake(n, "a");
  fake_qmp_withhold(fq, "cont", NULL);
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_STOPPED));
  g_autofree char *start = vmlet_vm_operate(rt_vm(n, "a"), VM_OP_START, FALSE);
  g_assert_true(rt_wait_command(fq, "cont", 1));
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STARTING);
  pid_t pid = rt_pid(n, "a");
  g_autofree char *stop = vmlet_vm_operate(rt_vm(n, "a"), VM_OP_STOP, FALSE);
  g_assert_true(rt_wait_op(n, "a", stop, "Completed"));
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_STOPPED));
  g_assert_true(rt_wait_exit(pid));
  g_autofree char *phase = NULL, *reason = NULL, *stop_reason = NULL;
  rt_op(n, "a", start, &phase, &reason);
  g_assert_cmpstr(phase, ==, "Failed");
  g_assert_cmpstr(reason, ==, "a Stop operation stopped the VM first");
  g_free(phase);
  rt_op(n, "a", stop, &phase, &stop_reason);
  g_assert_cmpstr(stop_reason, ==, "QEMU was stopped without waiting for the guest");
  g_autofree char *sent = fake_qmp_sequence(fq, probe);
  g_assert_cmpstr(sent, ==, "qmp_capabilities,qom-get,cont,quit");
  g_assert_true(rt_stopped_manually(n, "a"));
  g_assert_cmpint(rt_pid(n, "a"), ==, 0);
}

/* Holds "a" Running and in a graceful stop the guest does not answer yet. */
static RtNode *node_with_slow_guest(VmOpType first, char **uid)
{
  RtNode *n = rt_node_new();
  rt_write_vm(n, "a", "\"terminationGracePeriodSeconds\": 60");
  rt_guest_ignores_button(n, "a", TRUE);
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  *uid = vmlet_vm_operate(rt_vm(n, "a"), first, FALSE);
  g_assert_true(rt_wait_command(rt_fake(n, "a"), "system_powerdown", 1));
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPING);
  return n;
}

static void guest_powers_off(RtNode *n)
{
  g_assert_true(fake_qmp_emit(rt_fake(n, "a"), "SHUTDOWN",
                              "{\"guest\": true, \"reason\": \"guest-shutdown\"}"));
}

/* A Start during a graceful Stop: the stop goes on and becomes a restart. */
static void test_start_during_stop(void)
{
  g_autofree char *stop = NULL;
  g_autoptr(RtNode) n = node_with_slow_guest(VM_OP_STOP, &stop);
  pid_t pid = rt_pid(n, "a");
  g_autofree char *start = vmlet_vm_operate(rt_vm(n, "a"), VM_OP_START, FALSE);
  /* Nothing more is sent: the button was pressed, the guest is shutting down. */
  rt_spin(50);
  g_assert_cmpuint(fake_qmp_count(rt_fake(n, "a"), "quit"), ==, 0);
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPING);
  guest_powers_off(n);
  g_assert_true(rt_wait_op(n, "a", start, "Completed"));
  g_assert_true(rt_wait_exit(pid));
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_RUNNING);
  g_assert_cmpint(rt_pid(n, "a"), !=, pid);
  g_assert_cmpint(rt_pid(n, "a"), >, 0);
  g_assert_cmpuint(rt_standins(n), ==, 2);
  g_assert_false(rt_stopped_manually(n, "a"));
  g_autofree char *phase = NULL, *reason = NULL;
  rt_op(n, "a", stop, &phase, &reason);
  g_assert_cmpstr(phase, ==, "Completed");
  g_assert_cmpstr(reason, ==, "the guest powered off after the ACPI power button");
}

/* A Stop during a Restart's stop: the VM stays stopped and the Restart did not happen. */
static void test_stop_during_restart(void)
{
  g_autofree char *restart = NULL;
  g_autoptr(RtNode) n = node_with_slow_guest(VM_OP_RESTART, &restart);
  pid_t pid = rt_pid(n, "a");
  g_autofree char *stop = vmlet_vm_operate(rt_vm(n, "a"), VM_OP_STOP, FALSE);
  guest_powers_off(n);
  g_assert_true(rt_wait_op(n, "a", stop, "Completed"));
  g_assert_true(rt_wait_exit(pid));
  g_autofree char *phase = NULL, *reason = NULL;
  rt_op(n, "a", restart, &phase, &reason);
  g_assert_cmpstr(phase, ==, "Failed");
  g_assert_cmpstr(reason, ==, "a Stop operation stopped the VM first");
  rt_spin(100);
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPED);
  g_assert_cmpint(rt_pid(n, "a"), ==, 0);
  g_assert_cmpuint(rt_standins(n), ==, 1);
  g_assert_true(rt_stopped_manually(n, "a"));
}

/* The drop-in deleted while QEMU starts: Terminating at once, quit without the button,
 * then the record and the run dir go and the VM with them. */
static void test_delete_while_starting(void)
{
  g_autoptr(RtNode) n = rt_node_new();
  rt_write_vm(n, "a", NULL);
  FakeQmp *fq = rt_fake(n, "a");
  fake_qmp_withhold(fq, "cont", NULL);
  rt_start(n);
  g_assert_true(rt_wait_command(fq, "cont", 1));
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STARTING);
  pid_t pid = rt_pid(n, "a");
  g_autofree char *record = g_build_filename(rt_state_dir(n), "vms", "default.a.json", NULL);
  g_assert_true(g_file_test(record, G_FILE_TEST_EXISTS));
  rt_remove_vm(n, "a");
  rt_reload(n);
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_TERMINATING);
  g_assert_true(rt_wait_gone(n, "a"));
  g_assert_true(rt_wait_exit(pid));
  g_autofree char *sent = fake_qmp_sequence(fq, probe);
  g_assert_cmpstr(sent, ==, "qmp_capabilities,qom-get,cont,quit");
  g_assert_false(g_file_test(record, G_FILE_TEST_EXISTS));
  g_autofree char *run = g_build_filename(rt_root(n), "run", "vms", "default.a", NULL);
  g_assert_false(g_file_test(run, G_FILE_TEST_EXISTS));
  /* Gone for good: a reload finds nothing to bring back. */
  rt_reload(n);
  rt_spin(50);
  g_assert_null(rt_vm(n, "a"));
  g_assert_cmpuint(rt_standins(n), ==, 1);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/runtime/jobs/rules", test_job_rules);
  g_test_add_func("/runtime/jobs/names", test_job_names);
  g_test_add_func("/runtime/jobs/phase-table", test_phase_table);
  g_test_add_func("/runtime/jobs/stop-while-starting", test_stop_while_starting);
  g_test_add_func("/runtime/jobs/start-during-stop", test_start_during_stop);
  g_test_add_func("/runtime/jobs/stop-during-restart", test_stop_during_restart);
  g_test_add_func("/runtime/jobs/delete-while-starting", test_delete_while_starting);
  return g_test_run();
}
