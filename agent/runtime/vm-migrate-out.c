/* The source of a live migration: the MIGRATE_OUT job, as a table of named steps.
 *
 * Each step is journaled before it acts (journal.h) and ends by calling next() or fail().
 * Until the commit, a failure undoes QEMU's side, tells the destination to abort and leaves
 * the VM Running here; from the commit on (the destination may be running the guest) the
 * source never resumes: it waits for the destination's answer instead. */
#include "vm-migrate-out.h"

#include <glib/gstdio.h>

static void next(VmMigOut *m);

static const struct {
  const char *name;
  VmletMigStep journal;
  gint progress; /* DVP's percent at the start of the step */
  void (*run)(VmMigOut *m);
} steps[] = {
    [MIG_STEP_CHOOSE] = {"choosing a target", VMLET_MIG_PREPARING, 1, mig_out_choose},
    [MIG_STEP_PREPARE] = {"preparing the target", VMLET_MIG_PREPARING, 2, mig_out_prepare},
    [MIG_STEP_SETUP] = {"setting up QEMU", VMLET_MIG_PREPARED, 4, mig_out_setup},
    [MIG_STEP_MIRROR] = {"copying local disks", VMLET_MIG_PREPARED, 10, mig_out_mirror},
    [MIG_STEP_MIGRATE] = {"copying memory", VMLET_MIG_PREPARED, 10, mig_out_migrate},
    /* Still journaled Prepared: recovery treats a switchover as Prepared (no commit was
     * sent), and writing it would add two fsyncs to the guest's pause. */
    [MIG_STEP_SWITCHOVER] = {"switching over", VMLET_MIG_PREPARED, 91, mig_out_switchover},
    [MIG_STEP_COMMIT] = {"committing", VMLET_MIG_COMMITTING, 92, mig_out_commit},
    [MIG_STEP_HAND_OVER] = {"handing over", VMLET_MIG_COMMITTED, 100, mig_out_hand_over},
};

const char *mig_out_step_name(VmMigOut *m)
{
  return steps[m->step].name;
}

VmletMonitor *mig_out_monitor(VmMigOut *m)
{
  return m->vm->qemu ? vmlet_instance_get_monitor(m->vm->qemu) : NULL;
}

void mig_out_set_progress(VmMigOut *m, gint progress)
{
  if (progress == m->progress)
    return;
  m->progress = progress;
  vm_ops_progress(m->vm, m->op_uid, progress, m->peer ? m->peer->name : NULL);
  vm_changed(m->vm);
}

static void run_step(VmMigOut *m)
{
  g_autoptr(GError) error = NULL;
  VmletMigJournal *j = m->journal;
  if (j->step != steps[m->step].journal &&
      !vmlet_mig_journal_step(j, m->vm->env->node->state_dir, steps[m->step].journal,
                              &error)) {
    /* The step was not entered: the failure is handled by what the journal says. Else a
     * Committing that could not be written would count as a commit sent (retried, with a
     * restart then resuming here), and a Committed one would retry the commit and step
     * past the table's end. */
    if (m->step > MIG_STEP_CHOOSE)
      m->step--;
    mig_out_fail(m, "MigrationJournalError", error->message);
    return;
  }
  mig_out_set_progress(m, MAX(m->progress, steps[m->step].progress));
  steps[m->step].run(m);
}

static void next(VmMigOut *m)
{
  /* A step that completes after the job began to fail (a QMP reply already on its way
   * when a cancel came) must not start the next one. */
  if (m->ended || m->failing || m->step + 1 >= G_N_ELEMENTS(steps))
    return;
  m->step++;
  run_step(m);
}

void mig_out_next(VmMigOut *m)
{
  next(m);
}

/* ---- the job ---- */

void mig_out_free(VmMigOut *m)
{
  if (!m)
    return;
  g_cancellable_cancel(m->cancel);
  g_clear_object(&m->cancel);
  if (m->undo_cancel)
    g_cancellable_cancel(m->undo_cancel);
  g_clear_object(&m->undo_cancel);
  g_clear_handle_id(&m->poll_timer, g_source_remove);
  g_clear_handle_id(&m->retry_timer, g_source_remove);
  if (m->migration_id && mig_out_monitor(m))
    g_signal_handler_disconnect(mig_out_monitor(m), m->migration_id);
  vmlet_mig_journal_free(m->journal);
  g_clear_pointer(&m->peer, vmlet_peer_unref);
  g_free(m->op_uid);
  g_clear_pointer(&m->selector, g_hash_table_unref);
  g_clear_pointer(&m->disks, g_ptr_array_unref);
  g_clear_pointer(&m->mirror, g_ptr_array_unref);
  g_free(m->tls_dir);
  mig_out_remove_markers(m);
  g_free(m->marker_token);
  vmlet_migration_info_clear(&m->info);
  g_free(m);
}

static char *refused_by_policy(const VmletVm *vm, gboolean force, gboolean *auto_converge)
{
  switch (vm->spec->migration_policy) {
  case VM_MIGRATION_ALWAYS_SAFE:
    *auto_converge = FALSE;
    return force ? g_strdup("liveMigrationPolicy AlwaysSafe does not allow force") : NULL;
  case VM_MIGRATION_PREFER_SAFE:
    *auto_converge = force;
    return NULL;
  case VM_MIGRATION_ALWAYS_FORCED:
    *auto_converge = TRUE;
    return NULL;
  case VM_MIGRATION_PREFER_FORCED:
    *auto_converge = TRUE;
    return NULL;
  }
  return NULL;
}

char *vm_migrate_out_begin(VmletVm *vm, const char *op_uid, GHashTable *selector,
                           gboolean force)
{
  char *why = vm_migratable(vm);
  if (why)
    return why;
  gboolean auto_converge = FALSE;
  why = refused_by_policy(vm, force, &auto_converge);
  if (why)
    return why;
  g_autoptr(GError) error = NULL;
  if (!vmlet_migrations_take_slot(vm->env->migrations, TRUE, &error))
    return g_strdup(error->message);
  VmMigOut *m = g_new0(VmMigOut, 1);
  m->qemu_downtime_ms = m->memory_ms = -1; /* until QEMU says */
  m->vm = vm;
  m->op_uid = g_strdup(op_uid);
  m->selector = selector ? g_hash_table_ref(selector) : NULL;
  m->force = force;
  m->auto_converge = auto_converge;
  m->cancel = g_cancellable_new();
  m->downtime_ms = vm->env->node->migration.downtime_ms;
  m->progress = -1;
  m->was_paused = vm->paused;
  g_autofree char *id = g_uuid_string_random();
  m->journal = vmlet_mig_journal_new(id, VMLET_MIG_SOURCE, vm->namespace, vm->name, "",
                                     vm->rec->generation + 1);
  m->journal->operation = g_strdup(op_uid);
  m->journal->paused = m->was_paused;
  vm->mig_out = m;
  vmlet_migrations_register(vm->env->migrations, id, G_OBJECT(vm));
  vm_set_job(vm, VM_JOB_MIGRATE_OUT, VM_STOP_USER, FALSE);
  mig_state_begin(vm, vm->env->node->name, NULL);
  vm_set_phase(vm, VM_PHASE_MIGRATING);
  m->step = MIG_STEP_CHOOSE;
  run_step(m);
  return NULL;
}

VmMigOut *mig_out_rebuild(VmletVm *vm, VmletMigJournal *j)
{
  VmMigOut *m = g_new0(VmMigOut, 1);
  m->qemu_downtime_ms = m->memory_ms = -1;
  m->vm = vm;
  m->journal = j;
  m->recovered = TRUE;
  m->cancel = g_cancellable_new();
  m->was_paused = j->paused;
  m->downtime_ms = vm->env->node->migration.downtime_ms;
  m->progress = -1;
  for (m->step = MIG_STEP_CHOOSE; m->step < MIG_STEP_HAND_OVER; m->step++)
    if (steps[m->step].journal == j->step)
      break;
  vm->mig_out = m;
  vmlet_migrations_register(vm->env->migrations, j->id, G_OBJECT(vm));
  vm_set_job(vm, VM_JOB_MIGRATE_OUT, VM_STOP_USER, FALSE);
  mig_state_begin(vm, vm->env->node->name, j->peer);
  return m;
}

void mig_out_recovered_disks(VmMigOut *m)
{
  VmletVm *vm = m->vm;
  const VmletMigJournal *j = m->journal;
  /* What may have been mirrored: every local writable disk (cancelling a job that never
   * started is harmless, leaving one running is not). */
  m->mirror = g_ptr_array_new();
  for (guint i = 0; vm->plan && i < vm->plan->disks->len; i++) {
    VmPlanDisk *d = vm->plan->disks->pdata[i];
    if ((d->is_ref || d->attachment) && !d->read_only && !d->host_device) {
      g_ptr_array_add(m->mirror, d);
      /* A shared-storage marker the killed vmletd left behind. */
      g_autofree char *marker = vm_mig_marker_path(d->path, j->id);
      g_unlink(marker);
    }
  }
}

gint vm_migrate_out_progress(VmletVm *vm)
{
  return vm->mig_out ? vm->mig_out->progress : -1;
}

JsonNode *vm_migrate_out_describe(VmletVm *vm)
{
  VmMigOut *m = vm->mig_out;
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", m->journal->id);
  json_object_set_string_member(o, "role", "Source");
  json_object_set_string_member(o, "step", vmlet_mig_step_name(m->journal->step));
  json_object_set_int_member(o, "generation", (gint64)m->journal->generation);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}
