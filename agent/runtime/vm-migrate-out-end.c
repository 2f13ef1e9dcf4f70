/* The source's end, either way: a failure before the commit undoes QEMU's side and
 * resumes the VM here (its run policy decides when QEMU is gone); after the hand-over the
 * VM is forgotten here, its stale disk copies set aside. */
#include "vm-migrate-out.h"

#include <errno.h>

#include <glib/gstdio.h>

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
