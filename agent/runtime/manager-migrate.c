/* The manager's side of migrations: what the peer API (agent/api/peer*.c) asks of this node,
 * each call already authenticated (the peer's certificate chains to the CA) and authorised
 * (it names a configured peer, `peer` here). */
#include "manager-private.h"

#include <string.h>

#include "jsonval.h"
#include "mig-error.h"
#include "objects.h"
#include "vm-migrate-in.h"
#include "vmrecord.h"

VmletMigrations *vmlet_manager_migrations(VmletManager *mgr)
{
  return mgr->env.migrations;
}

JsonNode *vmlet_manager_node_summary(VmletManager *mgr)
{
  const VmletNode *node = mgr->env.node;
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "name", node->name);
  json_object_set_object_member(o, "labels", jv_object_from_strings(node->labels));
  json_object_set_boolean_member(o, "cordoned", mgr->env.cordoned);
  VmletMigrations *ms = mgr->env.migrations;
  JsonObject *in = json_object_new(), *out = json_object_new();
  json_object_set_int_member(in, "inUse", ms ? vmlet_migrations_in_use(ms, FALSE) : 0);
  json_object_set_int_member(in, "limit", node->migration.inbound);
  json_object_set_int_member(out, "inUse", ms ? vmlet_migrations_in_use(ms, TRUE) : 0);
  json_object_set_int_member(out, "limit", node->migration.outbound);
  json_object_set_object_member(o, "inbound", in);
  json_object_set_object_member(o, "outbound", out);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

/* The VM of a prepare request, validated exactly as its drop-in will be. */
static VmSpec *request_vm(JsonObject *req, GError **error)
{
  JsonNode *vm = json_object_get_member(req, "vm");
  if (!vm || !JSON_NODE_HOLDS_OBJECT(vm)) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID, "vm: expected an object");
    return NULL;
  }
  g_autofree char *text = json_to_string(vm, FALSE);
  g_autoptr(GError) local = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("the migrating VM", text, strlen(text),
                                                  NULL, &local);
  VmletObject *o = objs && objs->len == 1 ? objs->pdata[0] : NULL;
  if (!o || o->kind != VMLET_KIND_VIRTUAL_MACHINE) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID, "%s",
                local ? local->message : "vm: expected one VirtualMachine");
    return NULL;
  }
  return vm_spec_ref(o->vm);
}

void vmlet_manager_migration_prepare(VmletManager *mgr, JsonObject *req, const char *peer,
                                     const char *peer_dn, GAsyncReadyCallback callback,
                                     gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(mgr, NULL, callback, user_data);
  g_task_set_source_tag(task, vmlet_manager_migration_prepare);
  GError *error = NULL;
  const char *id = jv_string_at(req, "id");
  g_autoptr(VmSpec) spec = NULL;
  if (!vmlet_mig_id_valid(id) || jv_int_at(req, "generation", 0) < 1 ||
      g_strcmp0(jv_string_at(req, "source"), peer) != 0) {
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID,
                            "expected a migration id, a generation and the caller as source");
    return;
  }
  /* A node in maintenance takes nothing, even from a source that chose it before it was
   * cordoned (the source's choice skips a cordoned peer: vmlet_manager_node_summary). */
  if (mgr->env.cordoned) {
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_UNSCHEDULABLE,
                            "node %s is cordoned (maintenance): it takes no migrations until "
                            "it is uncordoned", mgr->env.node->name);
    return;
  }
  if (vmlet_migrations_lookup(mgr->env.migrations, id)) {
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_BUSY,
                            "migration %s is already under way here", id);
    return;
  }
  spec = request_vm(req, &error);
  if (!spec) {
    g_task_return_error(task, error);
    return;
  }
  /* Never two copies: a VM this node knows (a drop-in, a record, a QEMU) is not taken. */
  if (vmlet_manager_lookup(mgr, spec->meta.namespace, spec->meta.name)) {
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_UNSCHEDULABLE,
                            "VirtualMachine %s/%s already exists on node %s",
                            spec->meta.namespace, spec->meta.name, mgr->env.node->name);
    return;
  }
  if (!vmlet_migrations_take_slot(mgr->env.migrations, FALSE, &error)) {
    error->domain = VMLET_MIG_ERROR;
    error->code = VMLET_MIG_ERROR_UNSCHEDULABLE;
    g_task_return_error(task, error);
    return;
  }
  VmletVm *vm = mgr_ensure_vm(mgr, spec->meta.namespace, spec->meta.name);
  vmlet_vm_migrate_in(vm, spec, req, peer, peer_dn, task);
}

JsonNode *vmlet_manager_migration_prepare_finish(VmletManager *mgr, GAsyncResult *result,
                                                 GError **error)
{
  return g_task_propagate_pointer(G_TASK(result), error);
}

/* The VM carrying migration id, if the caller is its peer. */
static VmletVm *carrier(VmletManager *mgr, const char *id, const char *peer, GError **error)
{
  GObject *o = mgr->env.migrations ? vmlet_migrations_lookup(mgr->env.migrations, id) : NULL;
  if (!o) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_NOT_FOUND,
                "no migration %s on node %s", id, mgr->env.node->name);
    return NULL;
  }
  VmletVm *vm = VMLET_VM(o);
  if (g_strcmp0(vmlet_vm_migration_peer(vm), peer) != 0) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_FORBIDDEN,
                "migration %s is not with node %s", id, peer);
    return NULL;
  }
  return vm;
}

/* A migration no VM carries any more: its outcome, if the caller was its peer. error
 * keeps carrier()'s "no migration" when there is none. */
static VmletMigJournal *outcome(VmletManager *mgr, const char *id, const char *peer,
                                GError **error)
{
  if (!g_error_matches(*error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_NOT_FOUND))
    return NULL;
  VmletMigJournal *j = vmlet_mig_journal_find(mgr->env.node->state_dir, id, NULL);
  if (!j || !vmlet_mig_step_is_outcome(j->step)) {
    vmlet_mig_journal_free(j);
    return NULL;
  }
  if (g_strcmp0(j->peer, peer) != 0) {
    g_clear_error(error);
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_FORBIDDEN,
                "migration %s is not with node %s", id, peer);
    vmlet_mig_journal_free(j);
    return NULL;
  }
  g_clear_error(error);
  return j;
}

static JsonNode *describe_outcome(const VmletMigJournal *j)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", j->id);
  json_object_set_string_member(o, "role", vmlet_mig_role_name(j->role));
  json_object_set_string_member(o, "step", vmlet_mig_step_name(j->step));
  json_object_set_int_member(o, "generation", (gint64)j->generation);
  if (j->reason)
    json_object_set_string_member(o, "reason", j->reason);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

JsonNode *vmlet_manager_migration_describe(VmletManager *mgr, const char *id, const char *peer,
                                           GError **error)
{
  GError *local = NULL;
  VmletVm *vm = carrier(mgr, id, peer, &local);
  if (vm)
    return vmlet_vm_migration_describe(vm);
  g_autoptr(VmletMigJournal) j = outcome(mgr, id, peer, &local);
  if (j)
    return describe_outcome(j);
  g_propagate_error(error, local);
  return NULL;
}

void vmlet_manager_migration_commit(VmletManager *mgr, const char *id, const char *peer,
                                    guint64 generation, GAsyncReadyCallback callback,
                                    gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(mgr, NULL, callback, user_data);
  GError *error = NULL;
  VmletVm *vm = carrier(mgr, id, peer, &error);
  if (vm) {
    vmlet_vm_migration_commit(vm, generation, task);
    return;
  }
  g_autoptr(VmletMigJournal) j = outcome(mgr, id, peer, &error);
  /* A commit again after the reply was lost: Finished is its answer, Aborted a refusal. */
  if (j && j->step == VMLET_MIG_FINISHED && j->role == VMLET_MIG_DESTINATION)
    g_task_return_pointer(task, describe_outcome(j), (GDestroyNotify)json_node_unref);
  else if (j)
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_ABORTED,
                            "migration %s was given up here%s%s", id, j->reason ? ": " : "",
                            j->reason ? j->reason : "");
  else
    g_task_return_error(task, error);
}

JsonNode *vmlet_manager_migration_commit_finish(VmletManager *mgr, GAsyncResult *result,
                                                GError **error)
{
  return g_task_propagate_pointer(G_TASK(result), error);
}

gboolean vmlet_manager_migration_abort(VmletManager *mgr, const char *id, const char *peer,
                                       const char *why, GError **error)
{
  GError *local = NULL;
  VmletVm *vm = carrier(mgr, id, peer, &local);
  if (vm)
    return vmlet_vm_migration_abort(vm, why, error);
  g_autoptr(VmletMigJournal) j = outcome(mgr, id, peer, &local);
  if (j && j->step == VMLET_MIG_ABORTED)
    return TRUE;
  if (j) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_BUSY,
                "migration %s is committed: the VM runs on node %s", id,
                j->role == VMLET_MIG_DESTINATION ? mgr->env.node->name : j->peer);
    return FALSE;
  }
  g_propagate_error(error, local);
  return FALSE;
}

/* ---- a restarted vmletd's migrations (vm-migrate-recover.c) ---- */

/* Outcomes older than this are no longer asked about: a peer cut off for a week has long
 * been dealt with by its operator. */
#define OUTCOME_KEEP_US (7 * G_TIME_SPAN_DAY)

void mgr_migrations_claim(VmletManager *mgr)
{
  const char *state_dir = mgr->env.node->state_dir;
  vmlet_mig_journal_prune(state_dir, g_get_real_time() - OUTCOME_KEEP_US);
  g_autoptr(GPtrArray) paths = vmlet_mig_journal_list(state_dir);
  for (guint i = 0; i < paths->len; i++) {
    g_autoptr(GError) error = NULL;
    VmletMigJournal *j = vmlet_mig_journal_load(paths->pdata[i], &error);
    if (!j) {
      g_ptr_array_add(mgr->setup_problems,
                      g_strdup_printf("%s; an unfinished migration may be recorded there: "
                                      "check both nodes before resuming its VM by hand",
                                      error->message));
      continue;
    }
    if (vmlet_mig_step_is_outcome(j->step)) {
      vmlet_mig_journal_free(j);
      continue;
    }
    VmletVm *vm = mgr_ensure_vm(mgr, j->namespace, j->name);
    vm_note(vm, LOG_NOTICE, "migration %s (%s, at %s, with %s) was under way: settling it",
            j->id, vmlet_mig_role_name(j->role), vmlet_mig_step_name(j->step), j->peer);
    vm_migrate_recover_claim(vm, j);
  }
}

void mgr_migrations_act(VmletManager *mgr)
{
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmletVm *vm = vms->pdata[i];
    /* A VM with a QEMU acts once the adopted QEMU has answered (vm-start.c). */
    if (!vm->qemu)
      vm_migrate_recover_act(vm);
  }
}
