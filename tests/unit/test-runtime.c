/* vmletd's VM runtime in process (runtime-harness.h): what QEMU's exit means under each run
 * policy, and operations against a VM in each state. Each table runs its cases side by side,
 * one VM each on one node, so the 1 s crash backoff and the grace period are paid once. */
#include <signal.h>
#include <string.h>

#include "runtime-harness.h"

/* Probe commands the attachment controller sends at every Running: not what these tests
 * are about. */
static const char *const probe[] = {"qom-list", "query-named-block-nodes", NULL};

static gint64 now_ms(void)
{
  return g_get_monotonic_time() / 1000;
}

/* ---- run policy x exit cause ---- */

typedef enum {
  EXIT_STATUS,     /* the stand-in exits 1 */
  EXIT_SIGNAL,     /* SIGKILL */
  EXIT_GUEST_OFF,  /* SHUTDOWN guest=true: vmletd must send quit */
  EXIT_QMP_CLOSED, /* QEMU hangs up on QMP and keeps running */
} ExitCause;

typedef enum {
  RESTART_NONE,
  RESTART_BACKOFF, /* a new stand-in after the 1 s crash backoff */
  RESTART_AT_ONCE, /* started again without a backoff (not a failure) */
} Restart;

#define KILLED "QEMU exited unexpectedly (killed by signal 9 (Killed))"
#define STATUS1 "QEMU exited unexpectedly (exit status 1)"
#define LOST "QMP connection lost: QEMU closed the QMP connection; QEMU was stopped"

static const struct {
  const char *name, *policy;
  ExitCause cause;
  const char *reason, *message; /* the Running condition right after the exit */
  Restart restart;
  gboolean stopped_manually;
} exits[] = {
    {"default-status", NULL, EXIT_STATUS, "CrashLoopBackOff", STATUS1, RESTART_BACKOFF, FALSE},
    {"default-signal", NULL, EXIT_SIGNAL, "CrashLoopBackOff", KILLED, RESTART_BACKOFF, FALSE},
    /* A guest powering itself off counts as a manual stop. */
    {"default-guest", NULL, EXIT_GUEST_OFF, "Stopped", "the guest powered off", RESTART_NONE,
     TRUE},
    {"default-qmp", NULL, EXIT_QMP_CLOSED, "CrashLoopBackOff", LOST, RESTART_BACKOFF, FALSE},
    {"always-status", "AlwaysOn", EXIT_STATUS, "CrashLoopBackOff", STATUS1, RESTART_BACKOFF,
     FALSE},
    {"always-signal", "AlwaysOn", EXIT_SIGNAL, "CrashLoopBackOff", KILLED, RESTART_BACKOFF,
     FALSE},
    {"always-guest", "AlwaysOn", EXIT_GUEST_OFF, NULL, NULL, RESTART_AT_ONCE, FALSE},
    {"always-qmp", "AlwaysOn", EXIT_QMP_CLOSED, "CrashLoopBackOff", LOST, RESTART_BACKOFF,
     FALSE},
    /* Manual VMs run only by operations: a crash leaves them stopped. */
    {"manual-status", "Manual", EXIT_STATUS, "Stopped", STATUS1, RESTART_NONE, TRUE},
    {"manual-signal", "Manual", EXIT_SIGNAL, "Stopped", KILLED, RESTART_NONE, TRUE},
    {"manual-guest", "Manual", EXIT_GUEST_OFF, "Stopped", "the guest powered off",
     RESTART_NONE, TRUE},
    {"manual-qmp", "Manual", EXIT_QMP_CLOSED, "Stopped", LOST, RESTART_NONE, TRUE},
};

static gint vm_restarts(RtNode *n, const char *vm)
{
  g_autoptr(JsonNode) j = vmlet_vm_to_json(rt_vm(n, vm));
  JsonObject *st = json_object_get_object_member(json_node_get_object(j), "status");
  return (gint)json_object_get_int_member(st, "restarts");
}

static void cause_exit(RtNode *n, const char *vm, ExitCause cause)
{
  switch (cause) {
  case EXIT_STATUS:
    rt_crash(n, vm, SIGUSR1);
    return;
  case EXIT_SIGNAL:
    rt_crash(n, vm, SIGKILL);
    return;
  case EXIT_GUEST_OFF:
    g_assert_true(fake_qmp_emit(rt_fake(n, vm), "SHUTDOWN",
                                "{\"guest\": true, \"reason\": \"guest-shutdown\"}"));
    g_assert_true(fake_qmp_emit(rt_fake(n, vm), "STOP", NULL));
    return;
  case EXIT_QMP_CLOSED:
    fake_qmp_disconnect(rt_fake(n, vm));
    return;
  }
}

typedef struct {
  RtNode *node;
  pid_t *pids;
  gint64 exited_ms[G_N_ELEMENTS(exits)];
  gboolean done[G_N_ELEMENTS(exits)];
} ExitCheck;

static void check_exit(RtNode *n, gsize i)
{
  const char *vm = exits[i].name;
  g_test_message("%s: after the exit", vm);
  FakeQmp *fq = rt_fake(n, vm);
  g_assert_cmpuint(fake_qmp_count(fq, "system_powerdown"), ==, 0);
  /* Only a guest's power-off is vmletd's to end, with quit: -no-shutdown keeps QEMU. */
  g_assert_cmpuint(fake_qmp_count(fq, "quit"), ==, exits[i].cause == EXIT_GUEST_OFF);
  g_assert_cmpint(rt_stopped_manually(n, vm), ==, exits[i].stopped_manually);
  if (exits[i].restart == RESTART_AT_ONCE)
    return; /* already on its way up again */
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, vm)), ==, VM_PHASE_STOPPED);
  g_autofree char *status = NULL, *reason = NULL, *message = NULL;
  rt_running_condition(n, vm, &status, &reason, &message);
  g_assert_cmpstr(status, ==, "False");
  g_assert_cmpstr(reason, ==, exits[i].reason);
  g_assert_cmpstr(message, ==, exits[i].message);
}

static gboolean check_exits(gpointer data)
{
  ExitCheck *c = data;
  gboolean all = TRUE;
  for (gsize i = 0; i < G_N_ELEMENTS(exits); i++) {
    if (!c->done[i] && rt_pid(c->node, exits[i].name) != c->pids[i]) {
      check_exit(c->node, i);
      c->exited_ms[i] = now_ms();
      c->done[i] = TRUE;
    }
    all = all && c->done[i];
  }
  return all;
}

static void test_policy_exit(void)
{
  g_autoptr(RtNode) n = rt_node_new();
  for (gsize i = 0; i < G_N_ELEMENTS(exits); i++) {
    g_autofree char *extra =
        exits[i].policy ? g_strdup_printf("\"runPolicy\": \"%s\"", exits[i].policy) : NULL;
    rt_write_vm(n, exits[i].name, extra);
  }
  rt_start(n);
  pid_t pids[G_N_ELEMENTS(exits)];
  for (gsize i = 0; i < G_N_ELEMENTS(exits); i++) {
    const char *vm = exits[i].name;
    if (exits[i].policy && g_str_equal(exits[i].policy, "Manual")) {
      g_assert_true(rt_wait_phase(n, vm, VM_PHASE_STOPPED)); /* Manual starts stopped */
      g_free(vmlet_vm_operate(rt_vm(n, vm), VM_OP_START, FALSE));
    }
    g_assert_true(rt_wait_phase(n, vm, VM_PHASE_RUNNING));
    pids[i] = rt_pid(n, vm);
    fake_qmp_clear_log(rt_fake(n, vm));
  }
  for (gsize i = 0; i < G_N_ELEMENTS(exits); i++)
    cause_exit(n, exits[i].name, exits[i].cause);

  /* Each VM is looked at in the loop iteration after vmletd saw its exit: well before any
   * backoff (>= 750 ms) could start it again. */
  ExitCheck c = {.node = n, .pids = pids};
  g_assert_true(rt_spin_until(check_exits, &c));
  gint64 *exited_ms = c.exited_ms;

  /* Restarted after the backoff, or not at all. */
  for (gsize i = 0; i < G_N_ELEMENTS(exits); i++) {
    const char *vm = exits[i].name;
    g_test_message("%s: restart", vm);
    g_assert_false(rt_proc_alive(pids[i]));
    switch (exits[i].restart) {
    case RESTART_BACKOFF:
      g_assert_true(rt_wait_new_pid(n, vm, pids[i]));
      /* 1 s as g_timeout_add_seconds rounds it (up to 250 ms early), counted from when the
       * test saw the exit: far from the few ms of a start without a backoff. */
      g_assert_cmpint(now_ms() - exited_ms[i], >=, 500);
      g_assert_true(rt_wait_phase(n, vm, VM_PHASE_RUNNING));
      g_assert_cmpint(vm_restarts(n, vm), ==, 1);
      break;
    case RESTART_AT_ONCE:
      g_assert_true(rt_wait_phase(n, vm, VM_PHASE_RUNNING));
      g_assert_cmpint(rt_pid(n, vm), !=, pids[i]);
      g_assert_cmpint(vm_restarts(n, vm), ==, 0); /* not counted as a failure */
      break;
    case RESTART_NONE:
      break;
    }
  }
  /* Past every backoff: those not to be restarted are still stopped. */
  rt_spin(300);
  for (gsize i = 0; i < G_N_ELEMENTS(exits); i++) {
    const char *vm = exits[i].name;
    if (exits[i].restart != RESTART_NONE) {
      g_autofree char *status = NULL, *reason = NULL, *message = NULL;
      rt_running_condition(n, vm, &status, &reason, &message);
      g_assert_cmpstr(status, ==, "True");
      g_assert_null(reason);
      continue;
    }
    g_assert_cmpint(rt_pid(n, vm), ==, 0);
    g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, vm)), ==, VM_PHASE_STOPPED);
  }
}

/* ---- operations x VM state ---- */

typedef enum {
  PID_NONE, /* no QEMU after the operation */
  PID_SAME,
  PID_NEW,
} PidAfter;

static const struct {
  const char *name, *spec_extra;
  gboolean guest_ignores;
  VmOpType op;
  gboolean force;
  const char *op_phase, *op_reason;
  VmPhase phase;    /* of the VM, once the operation is over */
  PidAfter pid;
  const char *sent; /* QMP commands after the operation (probe left out) */
} ops[] = {
    {"stop", NULL, FALSE, VM_OP_STOP, FALSE, "Completed",
     "the guest powered off after the ACPI power button", VM_PHASE_STOPPED, PID_NONE,
     "system_powerdown,quit"},
    {"stop-grace", "\"terminationGracePeriodSeconds\": 1", TRUE, VM_OP_STOP, FALSE, "Completed",
     "the guest did not power off within terminationGracePeriodSeconds; QEMU was stopped",
     VM_PHASE_STOPPED, PID_NONE, "system_powerdown,quit"},
    {"stop-force", NULL, TRUE, VM_OP_STOP, TRUE, "Completed",
     "QEMU was stopped without waiting for the guest", VM_PHASE_STOPPED, PID_NONE, "quit"},
    {"restart", NULL, FALSE, VM_OP_RESTART, FALSE, "Completed", NULL, VM_PHASE_RUNNING, PID_NEW,
     "system_powerdown,quit,qmp_capabilities,qom-get,cont"},
    {"restart-force", NULL, TRUE, VM_OP_RESTART, TRUE, "Completed", NULL, VM_PHASE_RUNNING,
     PID_NEW, "quit,qmp_capabilities,qom-get,cont"},
    {"start-running", NULL, FALSE, VM_OP_START, FALSE, "Completed", "already running",
     VM_PHASE_RUNNING, PID_SAME, ""},
    {"stop-always-on", "\"runPolicy\": \"AlwaysOn\"", FALSE, VM_OP_STOP, FALSE, "Failed",
     "stop-always-on: runPolicy AlwaysOn keeps the VM running; change runPolicy to stop it",
     VM_PHASE_RUNNING, PID_SAME, ""},
    {"start-always-off", "\"runPolicy\": \"AlwaysOff\"", FALSE, VM_OP_START, FALSE, "Failed",
     "start-always-off: runPolicy AlwaysOff does not allow starting the VM", VM_PHASE_STOPPED,
     PID_NONE, ""},
    {"restart-always-off", "\"runPolicy\": \"AlwaysOff\"", FALSE, VM_OP_RESTART, FALSE,
     "Failed", "restart-always-off: runPolicy AlwaysOff does not allow starting the VM",
     VM_PHASE_STOPPED, PID_NONE, ""},
    {"stop-stopped", "\"runPolicy\": \"Manual\"", FALSE, VM_OP_STOP, FALSE, "Completed",
     "already stopped", VM_PHASE_STOPPED, PID_NONE, ""},
    {"start-stopped", "\"runPolicy\": \"Manual\"", FALSE, VM_OP_START, FALSE, "Completed", NULL,
     VM_PHASE_RUNNING, PID_NEW, "qmp_capabilities,qom-get,cont"},
};

static void test_operations(void)
{
  g_autoptr(RtNode) n = rt_node_new();
  for (gsize i = 0; i < G_N_ELEMENTS(ops); i++) {
    rt_write_vm(n, ops[i].name, ops[i].spec_extra);
    rt_guest_ignores_button(n, ops[i].name, ops[i].guest_ignores);
  }
  rt_start(n);
  pid_t before[G_N_ELEMENTS(ops)];
  char *uids[G_N_ELEMENTS(ops)];
  gint64 began_ms = now_ms();
  for (gsize i = 0; i < G_N_ELEMENTS(ops); i++) {
    const char *vm = ops[i].name;
    const char *extra = ops[i].spec_extra ? ops[i].spec_extra : "";
    gboolean off = strstr(extra, "AlwaysOff") || strstr(extra, "Manual");
    g_assert_true(rt_wait_phase(n, vm, off ? VM_PHASE_STOPPED : VM_PHASE_RUNNING));
    before[i] = rt_pid(n, vm);
    fake_qmp_clear_log(rt_fake(n, vm));
    uids[i] = vmlet_vm_operate(rt_vm(n, vm), ops[i].op, ops[i].force);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(ops); i++) {
    const char *vm = ops[i].name;
    g_test_message("%s", vm);
    g_assert_true(rt_wait_op(n, vm, uids[i], ops[i].op_phase));
    g_autofree char *phase = NULL, *reason = NULL;
    rt_op(n, vm, uids[i], &phase, &reason);
    g_assert_cmpstr(reason, ==, ops[i].op_reason);
    g_assert_true(rt_wait_phase(n, vm, ops[i].phase));
    switch (ops[i].pid) {
    case PID_NONE:
      g_assert_cmpint(rt_pid(n, vm), ==, 0);
      if (before[i])
        g_assert_true(rt_wait_exit(before[i]));
      break;
    case PID_SAME:
      g_assert_cmpint(rt_pid(n, vm), ==, before[i]);
      g_assert_true(rt_proc_alive(before[i]));
      break;
    case PID_NEW:
      g_assert_cmpint(rt_pid(n, vm), >, 0);
      g_assert_cmpint(rt_pid(n, vm), !=, before[i]);
      if (before[i])
        g_assert_true(rt_wait_exit(before[i]));
      break;
    }
    g_autofree char *sent = fake_qmp_sequence(rt_fake(n, vm), probe);
    g_assert_cmpstr(sent, ==, ops[i].sent);
    g_free(uids[i]);
  }
  /* The grace period is what ended "stop-grace": not before it ran out. */
  g_assert_cmpint(now_ms() - began_ms, >=, 700);
  g_autofree char *status = NULL, *reason = NULL, *message = NULL;
  rt_running_condition(n, "stop-grace", &status, &reason, &message);
  g_assert_cmpstr(reason, ==, "Stopped");
  g_assert_cmpstr(message, ==, "the guest did not power off within terminationGracePeriodSeconds");
  g_assert_true(rt_stopped_manually(n, "stop"));
  g_assert_false(rt_stopped_manually(n, "stop-always-on"));
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/runtime/policy-x-exit", test_policy_exit);
  g_test_add_func("/runtime/operations", test_operations);
  return g_test_run();
}
