/* Maintenance in process (tests/unit/runtime-harness.h: the real manager and VM runtime,
 * stand-in QEMUs): a node without [migration] drained, its VM reported unplaceable, no
 * start while cordoned (Start refused NodeCordoned, a wanting VM Pending NodeCordoned),
 * --force stopping it gracefully, the cordon surviving a vmletd restart, uncordon starting
 * it again, a damaged cordon.json keeping the node cordoned and saying why. The live
 * migrations themselves are test_drain.py's (real QEMU, three nodes). */
#include <string.h>

#include <glib/gstdio.h>

#include "jsonval.h"
#include "runtime-harness.h"

static const char *ready_reason(RtNode *n, const char *name)
{
  static char reason[64];
  g_autoptr(JsonNode) vm = vmlet_vm_to_json(rt_vm(n, name));
  JsonArray *conds = jv_array_at(jv_object_at(json_node_get_object(vm), "status"),
                                 "conditions");
  reason[0] = '\0';
  for (guint i = 0; conds && i < json_array_get_length(conds); i++) {
    JsonObject *c = json_array_get_object_element(conds, i);
    if (g_strcmp0(jv_string_at(c, "type"), "Ready") == 0 && jv_string_at(c, "reason"))
      g_strlcpy(reason, jv_string_at(c, "reason"), sizeof(reason));
  }
  return reason;
}

static const char *drain_phase(RtNode *n)
{
  static char phase[32];
  g_autoptr(JsonNode) node = vmlet_manager_node_json(rt_manager(n));
  const char *p = jv_string_path(json_node_get_object(node), "status.drain.phase");
  g_strlcpy(phase, p ? p : "", sizeof(phase));
  return phase;
}

static gboolean drain_ended(gpointer data)
{
  return strcmp(drain_phase(data), "Draining") != 0;
}

static char *cordon_path(RtNode *n)
{
  return g_build_filename(rt_state_dir(n), "cordon.json", NULL);
}

static void test_drain_without_migration(void)
{
  g_autoptr(RtNode) n = rt_node_new();
  rt_write_vm(n, "a", NULL);
  rt_write_vm(n, "b", "\"runPolicy\": \"Manual\"");
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  g_assert_true(rt_wait_phase(n, "b", VM_PHASE_STOPPED));
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_manager_drain(rt_manager(n), FALSE, &error));
  g_assert_no_error(error);
  g_assert_true(vmlet_manager_is_cordoned(rt_manager(n)));
  g_autofree char *path = cordon_path(n);
  g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
  g_assert_true(rt_spin_until(drain_ended, n));
  /* No [migration]: the Evict is refused at once and the VM reported, still running. */
  g_autoptr(JsonNode) node = vmlet_manager_node_json(rt_manager(n));
  JsonObject *o = json_node_get_object(node);
  g_assert_cmpstr(jv_string_path(o, "status.phase"), ==, "Ready,SchedulingDisabled");
  g_assert_cmpstr(jv_string_path(o, "status.drain.phase"), ==, "Failed");
  g_assert_cmpstr(jv_string_path(o, "status.drain.message"), ==,
                  "drain failed: 1 VM could not be moved");
  JsonArray *vms = jv_array_at(jv_object_at(jv_object_at(o, "status"), "drain"), "vms");
  g_assert_cmpuint(json_array_get_length(vms), ==, 1);
  JsonObject *va = json_array_get_object_element(vms, 0);
  g_assert_cmpstr(jv_string_at(va, "name"), ==, "a");
  g_assert_cmpstr(jv_string_at(va, "state"), ==, "Unplaceable");
  g_assert_true(g_str_has_prefix(jv_string_at(va, "operation"), "evacuation-a-"));
  g_assert_nonnull(strstr(jv_string_at(va, "reason"), "migration is not enabled"));
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_RUNNING);
  g_autofree char *status = vmlet_manager_summary(rt_manager(n));
  g_assert_cmpstr(status, ==, "drain failed: 1 VM could not be moved; 2 VMs: 1 Running, "
                              "1 Stopped");

  /* No start while cordoned: the operation is recorded Failed with the reason. */
  g_autofree char *start = vmlet_vm_operate(rt_vm(n, "b"), VM_OP_START, FALSE);
  g_autofree char *phase = NULL, *reason = NULL;
  rt_op(n, "b", start, &phase, &reason);
  g_assert_cmpstr(phase, ==, "Failed");
  g_assert_true(g_str_has_prefix(reason, "NodeCordoned: node "));
  g_autofree char *restart = vmlet_vm_operate(rt_vm(n, "a"), VM_OP_RESTART, FALSE);
  g_free(phase);
  g_free(reason);
  rt_op(n, "a", restart, &phase, &reason);
  g_assert_cmpstr(phase, ==, "Failed");
  g_assert_true(g_str_has_prefix(reason, "NodeCordoned: "));
  rt_spin(100);
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "b")), ==, VM_PHASE_STOPPED);
  g_assert_cmpuint(rt_standins(n), ==, 1);

  /* --force: the unplaceable VM is stopped with the button, not marked stopped by hand;
   * its policy wants it running, so it waits Pending for the node. */
  pid_t pid = rt_pid(n, "a");
  g_assert_true(vmlet_manager_drain(rt_manager(n), TRUE, &error));
  g_assert_true(rt_wait_command(rt_fake(n, "a"), "system_powerdown", 1));
  g_assert_true(rt_wait_exit(pid));
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_PENDING));
  g_assert_true(rt_spin_until(drain_ended, n));
  g_assert_cmpstr(drain_phase(n), ==, "Drained");
  g_assert_cmpstr(ready_reason(n, "a"), ==, "NodeCordoned");
  g_assert_false(rt_stopped_manually(n, "a"));

  /* vmletd restarts: still cordoned, nothing starts. */
  rt_restart(n);
  rt_spin(300);
  g_assert_true(vmlet_manager_is_cordoned(rt_manager(n)));
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_PENDING);
  g_assert_cmpuint(rt_standins(n), ==, 1);

  /* Uncordon: the file goes, the VM starts as its policy wants; b stays stopped. */
  g_assert_true(vmlet_manager_uncordon(rt_manager(n), &error));
  g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
  g_assert_false(vmlet_manager_is_cordoned(rt_manager(n)));
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  g_assert_cmpuint(rt_standins(n), ==, 2);
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "b")), ==, VM_PHASE_STOPPED);
  g_autoptr(JsonNode) after = vmlet_manager_node_json(rt_manager(n));
  g_assert_cmpstr(jv_string_path(json_node_get_object(after), "status.phase"), ==, "Ready");
  g_assert_null(jv_object_at(jv_object_at(json_node_get_object(after), "status"), "drain"));
}

static void test_damaged_cordon_file(void)
{
  g_autoptr(RtNode) n = rt_node_new();
  rt_write_vm(n, "a", NULL);
  g_assert_cmpint(g_mkdir_with_parents(rt_state_dir(n), 0700), ==, 0);
  g_autofree char *path = cordon_path(n);
  g_assert_true(g_file_set_contents(path, "{\"sinceUs\": \"soon\"}", -1, NULL));
  rt_start(n);
  /* Whoever wrote it wanted maintenance: cordoned, the VM waits, the problem is named. */
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_PENDING));
  rt_spin(200);
  g_assert_true(vmlet_manager_is_cordoned(rt_manager(n)));
  g_assert_cmpuint(rt_standins(n), ==, 0);
  g_assert_cmpstr(ready_reason(n, "a"), ==, "NodeCordoned");
  GPtrArray *problems = vmlet_manager_problems(rt_manager(n));
  gboolean named = FALSE;
  for (guint i = 0; i < problems->len; i++)
    named = named || (strstr(problems->pdata[i], path) &&
                      strstr(problems->pdata[i], "sinceUs: expected an integer"));
  g_assert_true(named);
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_manager_uncordon(rt_manager(n), &error));
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
}

/* Uncordoned while --force is still stopping a VM (its guest slow to power off): the stop
 * completes, and the VM, which its policy wants running, starts again at once. */
static void test_uncordon_during_force_stop(void)
{
  g_autoptr(RtNode) n = rt_node_new();
  rt_write_vm(n, "a", "\"terminationGracePeriodSeconds\": 60");
  rt_guest_ignores_button(n, "a", TRUE);
  rt_start(n);
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  pid_t pid = rt_pid(n, "a");
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_manager_drain(rt_manager(n), TRUE, &error));
  g_assert_true(rt_wait_command(rt_fake(n, "a"), "system_powerdown", 1));
  g_assert_cmpint(vmlet_vm_get_phase(rt_vm(n, "a")), ==, VM_PHASE_STOPPING);
  g_assert_true(vmlet_manager_uncordon(rt_manager(n), &error));
  g_assert_true(fake_qmp_emit(rt_fake(n, "a"), "SHUTDOWN",
                              "{\"guest\": true, \"reason\": \"guest-shutdown\"}"));
  g_assert_true(rt_wait_new_pid(n, "a", pid));
  g_assert_true(rt_wait_phase(n, "a", VM_PHASE_RUNNING));
  g_assert_cmpuint(rt_standins(n), ==, 2);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/runtime/cordon/drain-without-migration", test_drain_without_migration);
  g_test_add_func("/runtime/cordon/damaged-file", test_damaged_cordon_file);
  g_test_add_func("/runtime/cordon/uncordon-during-force-stop", test_uncordon_during_force_stop);
  return g_test_run();
}
