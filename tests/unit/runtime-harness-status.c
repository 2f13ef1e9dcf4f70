/* The runtime tests' view of a VM's status and operations, and the waits
 * (runtime-harness.h). */
#include "runtime-harness.h"

#include <string.h>

static JsonObject *status_of(RtNode *n, const char *vm, JsonNode **keep)
{
  VmletVm *v = rt_vm(n, vm);
  g_assert_nonnull(v);
  *keep = vmlet_vm_to_json(v);
  return json_object_get_object_member(json_node_get_object(*keep), "status");
}

static char *member_dup(JsonObject *o, const char *name)
{
  return json_object_has_member(o, name) ? g_strdup(json_object_get_string_member(o, name))
                                         : NULL;
}

void rt_running_condition(RtNode *n, const char *vm, char **status, char **reason,
                          char **message)
{
  g_autoptr(JsonNode) keep = NULL;
  JsonArray *conds = json_object_get_array_member(status_of(n, vm, &keep), "conditions");
  for (guint i = 0; i < json_array_get_length(conds); i++) {
    JsonObject *c = json_array_get_object_element(conds, i);
    if (!g_str_equal(json_object_get_string_member(c, "type"), "Running"))
      continue;
    *status = member_dup(c, "status");
    *reason = member_dup(c, "reason");
    *message = member_dup(c, "message");
    return;
  }
  g_assert_not_reached();
}

gboolean rt_stopped_manually(RtNode *n, const char *vm)
{
  g_autofree char *file = g_strdup_printf("default.%s.json", vm);
  g_autofree char *path = g_build_filename(rt_state_dir(n), "vms", file, NULL);
  g_autoptr(JsonParser) p = json_parser_new();
  g_autoptr(GError) error = NULL;
  json_parser_load_from_file(p, path, &error);
  g_assert_no_error(error);
  return json_object_get_boolean_member(json_node_get_object(json_parser_get_root(p)),
                                        "stoppedManually");
}

void rt_op(RtNode *n, const char *vm, const char *uid, char **phase, char **reason)
{
  *phase = *reason = NULL;
  VmletVm *v = rt_vm(n, vm);
  g_assert_nonnull(v);
  g_autoptr(JsonNode) ops = vmlet_vm_operations_json(v);
  g_autofree char *suffix = g_strdup_printf("-%s", uid);
  JsonArray *arr = json_node_get_array(ops);
  for (guint i = 0; i < json_array_get_length(arr); i++) {
    JsonObject *o = json_array_get_object_element(arr, i);
    const char *name =
        json_object_get_string_member(json_object_get_object_member(o, "metadata"), "name");
    if (!g_str_has_suffix(name, suffix))
      continue;
    JsonObject *st = json_object_get_object_member(o, "status");
    *phase = member_dup(st, "phase");
    *reason = member_dup(st, "reason");
    return;
  }
}

/* ---- waits ---- */

typedef struct {
  RtNode *node;
  const char *vm, *uid, *phase;
  VmPhase want;
  FakeQmp *fq;
  guint count;
  pid_t pid;
} Wait;

static gboolean phase_reached(gpointer data)
{
  Wait *w = data;
  VmletVm *v = rt_vm(w->node, w->vm);
  return v && vmlet_vm_get_phase(v) == w->want;
}

gboolean rt_wait_phase(RtNode *n, const char *vm, VmPhase phase)
{
  Wait w = {.node = n, .vm = vm, .want = phase};
  return rt_spin_until(phase_reached, &w);
}

static gboolean op_reached(gpointer data)
{
  Wait *w = data;
  g_autofree char *phase = NULL, *reason = NULL;
  rt_op(w->node, w->vm, w->uid, &phase, &reason);
  return g_strcmp0(phase, w->phase) == 0;
}

gboolean rt_wait_op(RtNode *n, const char *vm, const char *uid, const char *phase)
{
  Wait w = {.node = n, .vm = vm, .uid = uid, .phase = phase};
  return rt_spin_until(op_reached, &w);
}

static gboolean command_seen(gpointer data)
{
  Wait *w = data;
  return fake_qmp_count(w->fq, w->phase) >= w->count;
}

gboolean rt_wait_command(FakeQmp *fq, const char *command, guint count)
{
  Wait w = {.fq = fq, .phase = command, .count = count};
  return rt_spin_until(command_seen, &w);
}

static gboolean exited(gpointer data)
{
  return !rt_proc_alive(((Wait *)data)->pid);
}

gboolean rt_wait_exit(pid_t pid)
{
  Wait w = {.pid = pid};
  return rt_spin_until(exited, &w);
}

static gboolean new_pid(gpointer data)
{
  Wait *w = data;
  pid_t pid = rt_pid(w->node, w->vm);
  return pid != 0 && pid != w->pid;
}

gboolean rt_wait_new_pid(RtNode *n, const char *vm, pid_t old)
{
  Wait w = {.node = n, .vm = vm, .pid = old};
  return rt_spin_until(new_pid, &w);
}

static gboolean pid_changed(gpointer data)
{
  Wait *w = data;
  return rt_pid(w->node, w->vm) != w->pid;
}

gboolean rt_wait_pid_changed(RtNode *n, const char *vm, pid_t old)
{
  Wait w = {.node = n, .vm = vm, .pid = old};
  return rt_spin_until(pid_changed, &w);
}

static gboolean vm_gone(gpointer data)
{
  Wait *w = data;
  return rt_vm(w->node, w->vm) == NULL;
}

gboolean rt_wait_gone(RtNode *n, const char *vm)
{
  Wait w = {.node = n, .vm = vm};
  return rt_spin_until(vm_gone, &w);
}
