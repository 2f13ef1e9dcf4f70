/* The source of a live migration: the MIGRATE_OUT job, as a table of named steps.
 *
 * Each step is journaled before it acts (journal.h) and ends by calling next() or fail().
 * Until the commit, a failure undoes QEMU's side, tells the destination to abort and leaves
 * the VM Running here; from the commit on (the destination may be running the guest) the
 * source never resumes: it waits for the destination's answer instead. */
#include "vm-migrate-out.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "qemu-access.h"
#include "vmlet-error.h"

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

/* ---- the end, either way ---- */

/* The job is over: the slot and the ports are free again, the journal says the outcome
 * (FINISHED or ABORTED), kept to answer the destination. */
static void end_job(VmMigOut *m, VmletMigStep outcome)
{
  VmletVm *vm = m->vm;
  m->ended = TRUE;
  vmlet_migrations_unregister(vm->env->migrations, m->journal->id);
  if (!m->recovered)
    vmlet_migrations_give_slot(vm->env->migrations, TRUE);
  vmlet_mig_journal_step(m->journal, vm->env->node->state_dir, outcome, NULL);
  if (m->tls_dir)
    vm_host_remove_dir(m->tls_dir);
}

static void resumed(VmMigOut *m, const char *reason, const char *message)
{
  VmletVm *vm = m->vm;
  vm_set_str(&m->journal->reason, message);
  end_job(m, VMLET_MIG_ABORTED);
  g_autofree char *why = g_strdup_printf("%s: %s", reason, message);
  vm_note(vm, LOG_WARNING, "migration %s to %s failed, the VM stays here: %s", m->journal->id,
          m->journal->peer, why);
  vm_ops_complete(vm, VM_OP_EVICT, FALSE, why);
  vm_ops_complete(vm, VM_OP_MIGRATE, FALSE, why);
  mig_state_end(vm, "Failed", why);
  vm->mig_out = NULL;
  vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
  /* Without a QEMU (it died while vmletd was away, or after the commit was sent) the VM
   * is stopped here, and its run policy decides, as after any crash: no copy runs
   * anywhere now, and none may be left so by mistake. */
  vm_set_phase(vm, vm->qemu ? VM_PHASE_RUNNING : VM_PHASE_STOPPED);
  mig_out_free(m);
  if (!vm->qemu) {
    /* The dead QEMU's plan (the job's disks pointed into it until now). */
    g_clear_pointer(&vm->plan, vm_plan_unref);
    vm_set_str(&vm->last_exit, why);
    vm_schedule_restart(vm);
  }
  vm_after_migration(vm);
}

/* The undo of a failed job: QEMU's side cleaned, then cont. Its calls pass m->undo_cancel
 * (m->cancel is already cancelled): if QEMU exits meanwhile, vm_migrate_out_exited() ends
 * and frees the job, and the replies still to come find only the Failure. */
typedef struct {
  VmMigOut *m;
  GCancellable *cancel; /* m->undo_cancel: cancelled once m is freed */
  char *reason, *message;
} Failure;

static void failure_free(Failure *f)
{
  g_object_unref(f->cancel);
  g_free(f->reason);
  g_free(f->message);
  g_free(f);
}

static void on_resumed_after_failure(GObject *src, GAsyncResult *res, gpointer data)
{
  Failure *f = data;
  /* A cont refused (the VM was running all along) changes nothing. */
  if (src)
    vmlet_monitor_finish(VMLET_MONITOR(src), res, NULL);
  if (!g_cancellable_is_cancelled(f->cancel))
    resumed(f->m, f->reason, f->message);
  failure_free(f);
}

static void on_cleaned(GObject *src, GAsyncResult *res, gpointer data)
{
  Failure *f = data;
  vmlet_mig_cleanup_finish(res);
  if (g_cancellable_is_cancelled(f->cancel)) {
    failure_free(f);
    return;
  }
  VmletMonitor *mon = mig_out_monitor(f->m);
  /* The migration stops the vCPUs at pre-switchover and after it completed; cont on a
   * running VM changes nothing. A VM the user had paused stays paused. */
  if (mon && !f->m->was_paused)
    vmlet_monitor_cont(mon, f->cancel, on_resumed_after_failure, f);
  else
    on_resumed_after_failure(NULL, NULL, f);
}

void mig_out_fail(VmMigOut *m, const char *reason, const char *message)
{
  /* Handed over: the destination runs the VM, nothing here may resume it. */
  if (m->ended || m->failing || m->committed)
    return;
  if (m->step >= MIG_STEP_COMMIT && !m->gave_up) {
    /* Committing: the destination may run the guest; never resume here. */
    mig_out_commit_later(m, message);
    return;
  }
  m->failing = TRUE;
  g_cancellable_cancel(m->cancel);
  g_clear_handle_id(&m->poll_timer, g_source_remove);
  mig_out_tell_abort(m, message);
  m->undo_cancel = g_cancellable_new();
  Failure *f = g_new0(Failure, 1);
  f->m = m;
  f->cancel = g_object_ref(m->undo_cancel);
  f->reason = g_strdup(reason);
  f->message = g_strdup(message);
  VmletMonitor *mon = mig_out_monitor(m);
  if (!mon) {
    on_resumed_after_failure(NULL, NULL, f);
    return;
  }
  vmlet_mig_cleanup_async(mon, FALSE, m->mirror, f->cancel, on_cleaned, f);
}

void vm_migrate_out_cancel(VmletVm *vm, const char *reason)
{
  if (vm->mig_out)
    mig_out_fail(vm->mig_out, "Aborted", reason);
}

gboolean vmlet_vm_cancel_migration_before_switchover(VmletVm *vm, const char *reason)
{
  VmMigOut *m = vm->mig_out;
  /* A rebuilt job is recovery's: it settles with the peer, never by a cancel. */
  if (!m || m->recovered || m->ended || m->failing || m->step >= MIG_STEP_SWITCHOVER)
    return FALSE;
  mig_out_fail(m, "Aborted", reason);
  return TRUE;
}

/* The disks copied to the destination are stale here from the commit on: renamed
 * NAME.qcow2.migrated-to-NODE (nothing is deleted), and the VirtualDisks' drop-ins with
 * them, so that a migration back copies the disk afresh instead of finding an old one. */
static void set_copies_aside(VmMigOut *m)
{
  const char *target = m->journal->peer;
  for (guint i = 0; i < m->journal->created->len; i++) {
    const char *path = m->journal->created->pdata[i];
    g_autofree char *aside = g_strdup_printf("%s.migrated-to-%s", path, target);
    if (g_rename(path, aside) < 0 && errno != ENOENT)
      vm_note(m->vm, LOG_WARNING, "setting the stale copy %s aside: %s", path,
              g_strerror(errno));
  }
  for (guint i = 0; m->disks && i < m->disks->len; i++) {
    const VmMigDisk *d = m->disks->pdata[i];
    if (d->kind != VM_BLOCK_VIRTUAL_DISK || d->shared)
      continue;
    g_autofree char *dropin = vmlet_node_dropin_path(m->vm->env->node, "disks.d",
                                                     m->vm->namespace, d->name);
    if (g_file_test(dropin, G_FILE_TEST_EXISTS))
      vm_put_aside(dropin, target);
  }
}

gboolean vm_migrate_out_exited(VmletVm *vm)
{
  VmMigOut *m = vm->mig_out;
  if (!m)
    return FALSE;
  if (m->committed) {
    /* Handed over: the destination runs the VM, this node forgets it. */
    g_autofree char *target = g_strdup(m->journal->peer);
    set_copies_aside(m);
    vm_note(vm, LOG_INFO, "migration %s: handed over to %s", m->journal->id, target);
    end_job(m, VMLET_MIG_FINISHED);
    vm->mig_out = NULL;
    mig_out_free(m);
    vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
    vm_forget_migrated(vm, target);
    return TRUE;
  }
  if (m->step >= MIG_STEP_COMMIT && !m->gave_up && !m->failing) {
    /* The commit was sent (journaled Committing): the destination may already run the
     * guest, so this exit decides nothing. Telling it to abort and letting the run policy
     * start the VM here could make two running copies; the job stays and waits for the
     * commit's answer, as a restarted vmletd at Committing without its QEMU does: 200
     * hands over, "Aborted" leaves the VM stopped here for its run policy. */
    vm->rec->proc.pid = 0;
    vm->rec->proc.start_time = 0;
    g_autofree char *why = g_strdup_printf("the source's QEMU exited after the commit was "
                                           "sent; waiting for %s's answer to decide",
                                           m->journal->peer);
    vm_note(vm, LOG_WARNING, "migration %s: %s", m->journal->id, why);
    vm_set_str(&vm->last_exit, why);
    vm_save(vm);
    vm_changed(vm);
    return TRUE;
  }
  /* A crash before the commit: the destination must not resume; the run policy decides
   * what happens here. */
  mig_out_tell_abort(m, "the source's QEMU exited");
  vm_set_str(&m->journal->reason, "the source's QEMU exited");
  end_job(m, VMLET_MIG_ABORTED);
  g_autofree char *why = g_strdup("Aborted: the source's QEMU exited during the migration");
  vm_ops_complete(vm, VM_OP_EVICT, FALSE, why);
  vm_ops_complete(vm, VM_OP_MIGRATE, FALSE, why);
  mig_state_end(vm, "Failed", why);
  vm->mig_out = NULL;
  mig_out_free(m);
  return FALSE;
}
