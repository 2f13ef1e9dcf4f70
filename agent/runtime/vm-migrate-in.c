/* The destination of a live migration, first half: the prepare request checked (the VM
 * validated as a drop-in would be, its class and placement against this node), each disk
 * placed (vm-migrate-in-disks.c), the incoming QEMU started confined in its cgroup with
 * the source's machine type and device layout. vm-migrate-in-end.c goes on once QEMU's
 * monitor is up. */
#include "vm-migrate-in.h"

#include <string.h>

#include <glib/gstdio.h>

#include "jsonval.h"
#include "mig-error.h"

void mig_in_free(VmMigIn *m)
{
  if (!m)
    return;
  g_clear_handle_id(&m->watchdog, g_source_remove);
  g_clear_handle_id(&m->finish_retry, g_source_remove);
  g_cancellable_cancel(m->cancel);
  g_clear_object(&m->cancel);
  vmlet_mig_journal_free(m->journal);
  g_free(m->source);
  g_free(m->source_dn);
  g_clear_pointer(&m->disks, g_ptr_array_unref);
  g_clear_pointer(&m->exports, g_ptr_array_unref);
  g_free(m->tls_dir);
  g_free(m->marker_token);
  g_clear_object(&m->prepare);
  g_clear_object(&m->commit);
  g_free(m);
}

gboolean mig_in_refuse(GError **error, VmletMigError code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error_literal(error, VMLET_MIG_ERROR, code, msg);
  return FALSE;
}

/* ---- the request ---- */

static gboolean carried(JsonObject *files, const char *key, GBytes **out, GError **error)
{
  const char *b64 = jv_string_at(files, key);
  if (!b64)
    return TRUE;
  gsize len = 0;
  guchar *data = g_base64_decode(b64, &len);
  if (!data || !len) {
    g_free(data);
    return mig_in_refuse(error, VMLET_MIG_ERROR_INVALID, "files.%s: not base64", key);
  }
  *out = g_bytes_new_take(data, len);
  return TRUE;
}

/* The record of a VM that keeps its history: restarts, the spec its QEMU started from (so
 * restartAwaitingChanges stays what it was), the machine type it runs. The machine type
 * reaches QEMU's -machine argument: only a type vmlet runs is taken, since a peer's
 * "pc-q35-7.2,kernel=/some/file" would have this node's QEMU read a file it chose. */
static gboolean take_record(VmletVm *vm, JsonObject *r, GError **error)
{
  JsonObject *machine = jv_object_at(r, "machine");
  const char *alias = jv_string_at(machine, "alias"), *resolved = jv_string_at(machine, "resolved");
  /* The source sends an empty alias for a record without one. */
  if (machine && (!alias || !resolved || (*alias && !vm_class_machine_valid(alias)) ||
                  !vm_class_machine_valid(resolved))) {
    g_autofree char *q = vmlet_quote_for_message(resolved ? resolved : "");
    return mig_in_refuse(error, VMLET_MIG_ERROR_INVALID,
                "record.machine: expected \"q35\" or a versioned \"pc-q35-X.Y\", found %s", q);
  }
  JsonNode *started = r ? json_object_get_member(r, "startedSpec") : NULL;
  if (started && JSON_NODE_HOLDS_OBJECT(started)) {
    g_clear_pointer(&vm->rec->started_spec, json_node_unref);
    vm->rec->started_spec = json_node_copy(started);
  }
  const char *digest = jv_string_at(r, "provisioningDigest");
  if (digest && strlen(digest) <= 64)
    vm_set_str(&vm->rec->provisioning_digest, digest);
  if (machine) {
    vm_set_str(&vm->rec->machine_alias, alias);
    vm_set_str(&vm->rec->machine, resolved);
  }
  vm->rec->restarts = (guint)CLAMP(jv_int_at(r, "restarts", 0), 0, G_MAXINT32);
  vm->rec->stopped_manually = jv_bool_at(r, "stoppedManually", FALSE);
  gint64 created = jv_int_at(r, "createdUs", 0);
  if (created > 0)
    vm->rec->created_us = created;
  return TRUE;
}

static gboolean check_request(VmMigIn *m, JsonObject *req, GError **error)
{
  VmletVm *vm = m->vm;
  JsonObject *r = jv_object_at(req, "record");
  JsonArray *hot = jv_array_at(r, "hotplugged");
  if (hot && json_array_get_length(hot))
    return mig_in_refuse(error, VMLET_MIG_ERROR_UNSCHEDULABLE,
                "the VM has hot-plugged devices; vmlet does not migrate them yet (detach "
                "them first)");
  g_autofree char *mismatch = NULL;
  if (!vm_spec_matches_node(vm->spec, vm->env->node->labels, &mismatch))
    return mig_in_refuse(error, VMLET_MIG_ERROR_UNSCHEDULABLE, "node %s does not match: %s",
                vm->env->node->name, mismatch);
  if (!vmlet_inventory_class(vm->env->inv, vm->spec->class_name))
    return mig_in_refuse(error, VMLET_MIG_ERROR_UNSCHEDULABLE,
                "VirtualMachineClass \"%s\" is not defined on node %s", vm->spec->class_name,
                vm->env->node->name);
  JsonObject *files = jv_object_at(req, "files");
  if (!carried(files, "provisioning", &vm->carried_seed, error) ||
      !carried(files, "nvram", &vm->carried_nvram, error))
    return FALSE;
  m->marker_token = g_strdup(jv_string_at(req, "sharedMarker"));
  JsonObject *caps = jv_object_at(req, "capabilities");
  m->auto_converge = jv_bool_at(caps, "autoConverge", FALSE);
  m->multifd_channels = (guint)CLAMP(jv_int_at(caps, "multifdChannels", 0), 0, 16);
  JsonArray *disks = jv_array_at(req, "disks");
  if (!disks || json_array_get_length(disks) > VM_MAX_BLOCK_DEVICES)
    return mig_in_refuse(error, VMLET_MIG_ERROR_INVALID, "disks: expected a list of at most %d",
                VM_MAX_BLOCK_DEVICES);
  if (!take_record(vm, r, error))
    return FALSE;
  /* Journaled before any image is made, so a restart knows what to remove. */
  for (guint i = 0; i < json_array_get_length(disks); i++) {
    JsonObject *d = json_array_get_object_element(disks, i);
    if (!d)
      return mig_in_refuse(error, VMLET_MIG_ERROR_INVALID, "disks[%u]: expected an object", i);
    if (!vmlet_mig_journal_save(m->journal, vm->env->node->state_dir, error) ||
        !mig_in_take_disk(m, d, error))
      return FALSE;
  }
  return vmlet_mig_journal_save(m->journal, vm->env->node->state_dir, error);
}

void mig_in_prepare(VmletVm *vm, JsonObject *req, const char *source, const char *source_dn,
                    GTask *task)
{
  VmMigIn *m = g_new0(VmMigIn, 1);
  m->cancel = g_cancellable_new();
  m->vm = vm;
  m->source = g_strdup(source);
  m->source_dn = g_strdup(source_dn);
  m->disks = g_ptr_array_new_with_free_func(vm_mig_disk_free);
  m->journal = vmlet_mig_journal_new(jv_string_at(req, "id"), VMLET_MIG_DESTINATION,
                                     vm->namespace, vm->name, source,
                                     (guint64)jv_int_at(req, "generation", 0));
  /* What the drop-ins get once the VM is owned: the VM first, then the disks this node
   * had no object for (place()). Journaled, so a restarted vmletd can finish a commit. */
  JsonArray *manifests = json_array_new();
  json_array_add_element(manifests, json_node_copy(json_object_get_member(req, "vm")));
  m->journal->manifests = json_node_init_array(json_node_alloc(), manifests);
  json_array_unref(manifests);
  m->prepare = g_object_ref(task);
  m->last_contact_us = g_get_monotonic_time();
  vm->mig_in = m;
  vm_set_job(vm, VM_JOB_MIGRATE_IN, VM_STOP_USER, FALSE);
  mig_state_begin(vm, source, vm->env->node->name);
  vmlet_migrations_register(vm->env->migrations, m->journal->id, G_OBJECT(vm));
  g_autoptr(GError) error = NULL;
  /* A refusal is answered here, not by the abort; and the abort of a job without QEMU
   * frees m, so m->prepare is let go before it, never after. */
  if (!check_request(m, req, &error)) {
    g_clear_object(&m->prepare);
    mig_in_abort(m, error->message);
    g_task_return_error(task, g_steal_pointer(&error));
    return;
  }
  vm_start(vm, VM_START_INCOMING);
  if (!vm->qemu) {
    g_autofree char *why = g_strdup(vm->problem ? vm->problem : "QEMU did not start");
    g_clear_object(&m->prepare);
    mig_in_abort(m, why);
    g_task_return_new_error(task, VMLET_MIG_ERROR, VMLET_MIG_ERROR_UNSCHEDULABLE,
                            "starting the incoming QEMU: %s", why);
    return;
  }
  vm_set_phase(vm, VM_PHASE_MIGRATING);
}

VmMigIn *mig_in_rebuild(VmletVm *vm, VmletMigJournal *j)
{
  VmMigIn *m = g_new0(VmMigIn, 1);
  m->cancel = g_cancellable_new();
  m->vm = vm;
  m->journal = j;
  m->recovered = TRUE;
  m->source = g_strdup(j->peer);
  m->disks = g_ptr_array_new_with_free_func(vm_mig_disk_free);
  m->committed = j->step == VMLET_MIG_COMMITTED;
  m->last_contact_us = g_get_monotonic_time();
  vm->mig_in = m;
  vm_set_job(vm, VM_JOB_MIGRATE_IN, VM_STOP_USER, FALSE);
  mig_state_begin(vm, j->peer, vm->env->node->name);
  vmlet_migrations_register(vm->env->migrations, j->id, G_OBJECT(vm));
  return m;
}

/* ---- undo ---- */

static void remove_created(VmMigIn *m)
{
  /* Only what this migration made, by the journal's list: never a file that was there. */
  for (guint i = 0; i < m->journal->created->len; i++)
    g_unlink(m->journal->created->pdata[i]);
}

void mig_in_abort(VmMigIn *m, const char *why)
{
  VmletVm *vm = m->vm;
  if (m->ended)
    return;
  if (m->committed)
    return; /* the VM runs here: nothing to abort */
  vm_set_str(&m->journal->reason, why);
  if (vm->qemu) {
    /* The rest when QEMU has gone (vm_migrate_in_exited). */
    vmlet_mig_journal_step(m->journal, vm->env->node->state_dir, VMLET_MIG_ABORTING, NULL);
    vmlet_instance_quit(vm->qemu);
    return;
  }
  m->ended = TRUE;
  remove_created(m);
  /* The outcome stays to answer the source: it resumes only on a definite "Aborted". */
  vmlet_mig_journal_step(m->journal, vm->env->node->state_dir, VMLET_MIG_ABORTED, NULL);
  mig_in_release(m);
  /* The VM was never this node's: forgotten, as if it never came. */
  vm_set_phase(vm, VM_PHASE_TERMINATING);
  vm_forget(vm);
}

void mig_in_release(VmMigIn *m)
{
  VmletVm *vm = m->vm;
  m->ended = TRUE;
  if (m->prepare) {
    /* Ended before QEMU listened (a source that committed without waiting for the
     * prepare's answer): the prepare is answered, never left hanging. */
    g_task_return_new_error(m->prepare, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID,
                            "migration %s ended before its prepare was answered",
                            m->journal->id);
    g_clear_object(&m->prepare);
  }
  if (m->commit) {
    /* A commit under way when QEMU died: the VM is this node's all the same. */
    g_task_return_pointer(m->commit, mig_in_describe(m), (GDestroyNotify)json_node_unref);
    g_clear_object(&m->commit);
  }
  vmlet_migrations_unregister(vm->env->migrations, m->journal->id);
  vmlet_migrations_give_ports(vm->env->migrations, m->ports, m->n_ports);
  if (!m->recovered)
    vmlet_migrations_give_slot(vm->env->migrations, FALSE);
  if (m->tls_dir)
    vm_host_remove_dir(m->tls_dir);
  vm->mig_in = NULL;
  vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
  mig_in_free(m);
}

void vm_migrate_in_cancel(VmletVm *vm, const char *reason)
{
  if (vm->mig_in)
    mig_in_abort(vm->mig_in, reason);
}

gboolean vm_migrate_in_exited(VmletVm *vm)
{
  VmMigIn *m = vm->mig_in;
  if (!m)
    return FALSE;
  /* Held to the end: an abort forgets the VM, dropping the manager's reference. */
  g_autoptr(VmletVm) keep G_GNUC_UNUSED = g_object_ref(vm);
  vm->rec->proc.pid = 0;
  if (m->committed) {
    /* Committed, and QEMU died before it resumed: the VM is this node's all the same (the
     * source never resumes now); it is a crashed VM here, its run policy decides. */
    mig_in_finish(m, NULL);
    return FALSE;
  }
  if (m->prepare) {
    g_task_return_new_error(m->prepare, VMLET_MIG_ERROR, VMLET_MIG_ERROR_UNSCHEDULABLE,
                            "the incoming QEMU exited; see %s/qemu.log on %s",
                            vm->rec->runtime_dir, vm->env->node->name);
    g_clear_object(&m->prepare);
  }
  mig_in_abort(m, m->journal->reason ? m->journal->reason : "the incoming QEMU exited");
  return TRUE;
}
