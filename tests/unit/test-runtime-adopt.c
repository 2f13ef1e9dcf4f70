/* Restart safety in process (runtime-harness.h): a new vmletd (a new VmletManager on the
 * same dirs) takes over the QEMUs the old one left, from their records and QEMU's own
 * answer to query-status, and never starts a VM twice. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "jsonval.h"
#include "runtime-harness.h"

static const char *const probe[] = {"qom-list", "query-named-block-nodes", NULL};

/* The commands of one connection, in order, probe left out. */
static char *sent_on(FakeQmp *fq, guint connection)
{
  GString *s = g_string_new(NULL);
  GPtrArray *log = fake_qmp_log(fq);
  for (guint i = 0; i < log->len; i++) {
    FakeQmpCommand *c = log->pdata[i];
    if (c->connection != connection || g_strv_contains(probe, c->command))
      continue;
    g_string_append_printf(s, "%s%s", s->len ? "," : "", c->command);
  }
  return g_string_free(s, FALSE);
}

static RtNode *node_running(const char *spec_extra, pid_t *pid)
{
  RtNode *n = rt_node_new();
  rt_write_vm(n, "a", spec_extra);
  rt_start(n);
  if (spec_extra && strstr(spec_extra, "Manual")) {
    g_assert_true(rt_wait_phase(n, "a", VM_PHASE_STOPPED));
    g_free(vmlet_vm_operate(rt_vm(n, "a"), VM_OP_START, FALSE));
  }
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  *pid = rt_pid(n, "a");
  rt_spin(20); /* the probe's replies: vmletd is idle when it "dies" */
  return n;
}

static const char *last_transition(RtNode *n, guint back)
{
  static char phase[32];
  g_autoptr(JsonNode) j = vmlet_vm_to_json(rt_vm(n, "a"));
  JsonObject *st = json_object_get_object_member(json_node_get_object(j), "status");
  JsonArray *tr = json_object_get_array_member(json_object_get_object_member(st, "stats"),
                                               "phasesTransitions");
  guint len = json_array_get_length(tr);
  g_assert_cmpuint(len, >, back);
  g_strlcpy(phase, json_object_get_string_member(json_array_get_object_element(tr, len - 1 - back),
                                                 "phase"), sizeof(phase));
  return phase;
}

/* QEMU as a restarted vmletd finds it (query-status), and what the new vmletd must do. */
static const struct {
  const char *name;
  const char *status;   /* query-status reply's status */
  gboolean hold_cont;   /* the old vmletd died before cont was answered */
  const char *sent;     /* on the new connection */
  VmPhase phase;
  gboolean same_pid;
} adoptions[] = {
    {"running", "running", FALSE, "qmp_capabilities,query-status", VM_PHASE_RUNNING, TRUE},
    {"paused", "paused", FALSE, "qmp_capabilities,query-status", VM_PHASE_RUNNING, TRUE},
    /* died between exec and cont: the start is finished */
    {"prelaunch", "prelaunch", TRUE, "qmp_capabilities,query-status,cont", VM_PHASE_RUNNING,
     TRUE},
    /* the guest powered off while vmletd was away (-no-shutdown kept QEMU) */
    {"shutdown", "shutdown", FALSE, "qmp_capabilities,query-status,quit", VM_PHASE_STOPPED,
     FALSE},
};

static void test_adopt(gconstpointer data)
{
  gsize i = GPOINTER_TO_SIZE(data);
  g_autoptr(RtNode) n = rt_node_new();
  rt_write_vm(n, "a", NULL);
  FakeQmp *fq = rt_fake(n, "a");
  if (adoptions[i].hold_cont)
    fake_qmp_withhold(fq, "cont", NULL);
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", adoptions[i].hold_cont ? VM_PHASE_STARTING
                                                             : VM_PHASE_RUNNING));
  g_assert_true(rt_wait_command(fq, adoptions[i].hold_cont ? "cont" : "query-named-block-nodes",
                                1));
  pid_t pid = rt_pid(n, "a");
  rt_stop_manager(n);
  g_assert_true(rt_proc_alive(pid)); /* QEMU outlives vmletd */
  fake_qmp_release(fq, "cont");
  g_autofree char *reply = g_strdup_printf(
      "{\"return\": {\"status\": \"%s\", \"singlestep\": false, \"running\": %s}}",
      adoptions[i].status, g_str_equal(adoptions[i].status, "running") ? "true" : "false");
  fake_qmp_reply(fq, "query-status", NULL, reply);

  rt_start(n);
  g_assert_true(rt_wait_command(fq, "query-status", 1));
  g_assert_true(rt_wait_phase(n, "a", adoptions[i].phase));
  rt_spin(50);
  g_assert_cmpuint(fake_qmp_connections(fq), ==, 2);
  g_autofree char *sent = sent_on(fq, 2);
  g_assert_cmpstr(sent, ==, adoptions[i].sent);
  /* Never a second QEMU. */
  g_assert_cmpuint(rt_standins(n), ==, 1);
  if (adoptions[i].same_pid) {
    g_assert_cmpint(rt_pid(n, "a"), ==, pid);
    g_assert_true(rt_proc_alive(pid));
    /* A VM paused before vmletd restarted stays paused, and says so. */
    g_autoptr(JsonNode) j = vmlet_vm_to_json(rt_vm(n, "a"));
    g_autofree char *text = json_to_string(j, FALSE);
    g_assert_cmpint(strstr(text, "\"type\":\"Paused\"") != NULL, ==,
                    g_str_equal(adoptions[i].status, "paused"));
  } else {
    g_assert_true(rt_wait_exit(pid));
    g_assert_cmpint(rt_pid(n, "a"), ==, 0);
    g_autofree char *status = NULL, *reason = NULL, *message = NULL;
    rt_running_condition(n, "a", &status, &reason, &message);
    g_assert_cmpstr(message, ==, "the guest powered off");
    g_assert_true(rt_stopped_manually(n, "a"));
  }
}

/* vmletd died during a graceful stop or restart: the new one carries it on from its first
 * step, the power button, on its own connection. */
static void test_stop_carried_on(gconstpointer data)
{
  VmOpType op = GPOINTER_TO_INT(data);
  g_autoptr(RtNode) n = rt_node_new();
  rt_write_vm(n, "a", "\"terminationGracePeriodSeconds\": 60");
  rt_guest_ignores_button(n, "a", TRUE);
  FakeQmp *fq = rt_fake(n, "a");
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  pid_t pid = rt_pid(n, "a");
  g_free(vmlet_vm_operate(rt_vm(n, "a"), op, FALSE));
  g_assert_true(rt_wait_command(fq, "system_powerdown", 1));
  rt_restart(n);
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPING);
  g_assert_true(rt_wait_command(fq, "system_powerdown", 2));
  g_autofree char *sent = sent_on(fq, 2);
  g_assert_cmpstr(sent, ==, "qmp_capabilities,query-status,system_powerdown");
  g_assert_true(fake_qmp_emit(fq, "SHUTDOWN", "{\"guest\": true, \"reason\": \"guest-shutdown\"}"));
  g_assert_true(rt_wait_exit(pid));
  if (op == VM_OP_STOP) {
    g_assert_true(rt_wait_phase(n, "a", VM_PHASE_STOPPED));
    rt_spin(50);
    g_assert_cmpint(rt_pid(n, "a"), ==, 0);
    g_assert_cmpuint(rt_standins(n), ==, 1);
    g_assert_true(rt_stopped_manually(n, "a"));
  } else {
    g_assert_true(rt_wait_new_pid(n, "a", pid));
    g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
    g_assert_cmpuint(rt_standins(n), ==, 2);
    g_assert_false(rt_stopped_manually(n, "a"));
  }
  g_autofree char *after = sent_on(fq, 2);
  g_assert_cmpstr(after, ==, "qmp_capabilities,query-status,system_powerdown,quit");
}

/* QEMU exited while vmletd was away: Stopped, saying so. The default policy starts it
 * again at once; a Manual VM, like after any crash, stays stopped. */
static void test_gone_while_away(gconstpointer data)
{
  gboolean manual = GPOINTER_TO_INT(data);
  pid_t pid = 0;
  g_autoptr(RtNode) n = node_running(manual ? "\"runPolicy\": \"Manual\"" : NULL, &pid);
  rt_stop_manager(n);
  g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
  /* Its parent is gone in real life: init reaps it, so its pid is free, not a zombie. */
  g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
  rt_start(n);
  if (manual) {
    g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPED);
    rt_spin(100);
    g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPED);
    g_autofree char *status = NULL, *reason = NULL, *message = NULL;
    rt_running_condition(n, "a", &status, &reason, &message);
    g_assert_cmpstr(reason, ==, "Stopped");
    g_assert_cmpstr(message, ==, "QEMU exited while vmletd was not running");
    g_assert_cmpuint(rt_standins(n), ==, 1);
    g_assert_true(rt_stopped_manually(n, "a"));
    /* And after the next restart of vmletd too: the record says so. */
    rt_restart(n);
    rt_spin(50);
    g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPED);
    g_assert_cmpuint(rt_standins(n), ==, 1);
    return;
  }
  /* The record says what happened, then the start that followed at once. */
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STARTING);
  g_assert_cmpstr(last_transition(n, 1), ==, "Stopped");
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  g_assert_cmpint(rt_pid(n, "a"), !=, pid);
  g_assert_cmpuint(rt_standins(n), ==, 2);
}

/* A record written by a newer vmletd is refused by name. Its VM, whose QEMU it may name,
 * should then neither be started a second time nor have its record overwritten. */
static void test_newer_record(void)
{
  pid_t pid = 0;
  g_autoptr(RtNode) n = node_running(NULL, &pid);
  rt_stop_manager(n);
  g_autofree char *path = g_build_filename(rt_state_dir(n), "vms", "default.a.json", NULL);
  g_autofree char *text = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
  g_assert_nonnull(strstr(text, "\"version\" : 2,"));
  g_autoptr(GString) newer = g_string_new(text);
  g_string_replace(newer, "\"version\" : 2,", "\"version\" : 3,", 1);
  g_assert_true(g_file_set_contents(path, newer->str, -1, NULL));

  rt_start(n);
  GPtrArray *problems = vmlet_manager_problems(rt_manager(n));
  g_autofree char *want = g_strdup_printf(
      "%s: version: expected at most 2, found 3 (written by a newer vmletd)", path);
  gboolean found = FALSE;
  for (guint i = 0; i < problems->len; i++) {
    g_test_message("problem: %s", (const char *)problems->pdata[i]);
    found = found || g_str_equal(problems->pdata[i], want);
  }
  g_assert_true(found);
  rt_spin(100);
  g_assert_cmpuint(rt_standins(n), ==, 1);
  /* Held, and saying why. */
  g_autoptr(JsonNode) vm = vmlet_vm_to_json(rt_vm(n, "a"));
  JsonArray *conds = jv_array_at(jv_object_at(json_node_get_object(vm), "status"), "conditions");
  JsonObject *ready = json_array_get_object_element(conds, 0);
  g_assert_cmpstr(jv_string_at(ready, "type"), ==, "Ready");
  g_assert_cmpstr(jv_string_at(ready, "reason"), ==, "RecordUnreadable");
  g_assert_true(g_str_has_prefix(jv_string_at(ready, "message"), want));
  g_assert_cmpuint(fake_qmp_connections(rt_fake(n, "a")), ==, 1);
  g_autofree char *after = NULL;
  g_assert_true(g_file_get_contents(path, &after, NULL, NULL));
  g_assert_cmpstr(after, ==, newer->str);
  g_assert_true(rt_proc_alive(pid));
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(adoptions); i++) {
    g_autofree char *path = g_strdup_printf("/runtime/adopt/%s", adoptions[i].name);
    g_test_add_data_func(path, GSIZE_TO_POINTER(i), test_adopt);
  }
  g_test_add_data_func("/runtime/adopt/stop-carried-on", GINT_TO_POINTER(VM_OP_STOP),
                       test_stop_carried_on);
  g_test_add_data_func("/runtime/adopt/restart-carried-on", GINT_TO_POINTER(VM_OP_RESTART),
                       test_stop_carried_on);
  g_test_add_data_func("/runtime/adopt/gone-while-away", GINT_TO_POINTER(FALSE),
                       test_gone_while_away);
  g_test_add_data_func("/runtime/adopt/gone-while-away-manual", GINT_TO_POINTER(TRUE),
                       test_gone_while_away);
  g_test_add_func("/runtime/adopt/newer-record", test_newer_record);
  return g_test_run();
}
