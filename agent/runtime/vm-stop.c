/* Stopping a VM and what QEMU's exit means.
 *
 * A stop is the STOP job in the slot (vm-job.h): the ACPI power button, then `quit` after
 * terminationGracePeriodSeconds (DVP's meaning), or `quit` at once when forced. When QEMU
 * exits, the job's intent says what that was: the user's stop (Stopped), a restart
 * (started again), the guest's own power-off (per run policy), a deletion (forgotten).
 * An exit with no stop in the slot is a crash: Stopped, and started again after a
 * doubling delay when the run policy wants the VM running. */
#include "vm-private.h"

#include <glib/gstdio.h>

#include "objects.h"
#include "vm-migrate.h"

static gboolean on_grace_timeout(gpointer data)
{
  VmletVm *vm = data;
  vm->grace_timer = 0;
  vm->stop_end = VM_STOP_END_GRACE_EXPIRED;
  vm_set_str(&vm->last_exit, "the guest did not power off within terminationGracePeriodSeconds");
  if (vm->qemu)
    vmlet_instance_quit(vm->qemu);
  return G_SOURCE_REMOVE;
}

static void on_powerdown_sent(GObject *src, GAsyncResult *res, gpointer data)
{
  /* A refused button changes nothing: the grace period ends the stop either way. */
  vmlet_monitor_finish(VMLET_MONITOR(src), res, NULL);
}

void vm_stop_begin(VmletVm *vm)
{
  if (!vm_qemu_alive(vm))
    return;
  VmPhase before = vm->phase;
  if (!vm_deleting(vm))
    vm_set_phase(vm, VM_PHASE_STOPPING);
  if (vm->phase == before)
    vm_save(vm); /* the job, which the phase's save did not carry */
  guint grace = vm->spec ? vm->spec->termination_grace_seconds
                         : VM_DEFAULT_TERMINATION_GRACE_SECONDS;
  vm->stop_end = vm->job.intent == VM_STOP_GUEST ? VM_STOP_END_BY_GUEST : VM_STOP_END_FORCED;
  if (vm->job.force || grace == 0 || vm->job.intent == VM_STOP_GUEST) {
    g_clear_handle_id(&vm->grace_timer, g_source_remove);
    vmlet_instance_quit(vm->qemu);
    return;
  }
  /* ACPI power button first: the guest shuts down cleanly; a hard stop after the grace
   * period, as DVP's terminationGracePeriodSeconds says. */
  VmletMonitor *mon = vmlet_instance_get_monitor(vm->qemu);
  if (mon && !vmlet_monitor_is_closed(mon))
    vmlet_monitor_system_powerdown(mon, vmlet_instance_get_cancellable(vm->qemu),
                                   on_powerdown_sent, NULL);
  if (!vm->grace_timer)
    vm->grace_timer = g_timeout_add_seconds(grace, on_grace_timeout, vm);
}

/* ---- QEMU's events ---- */

static void on_shutdown(VmletMonitor *mon, gboolean guest, const char *reason, VmletVm *vm)
{
  /* -no-shutdown keeps QEMU alive after a guest power-off; the request ends it. SHUTDOWN
   * without guest is QEMU's own (our quit), nothing to decide. */
  if (guest)
    g_free(vm_request(vm, VM_REQ_GUEST_OFF, FALSE));
}

static void on_pause_changed(VmletVm *vm, gboolean paused)
{
  /* The -S start's cont also sends RESUME; only a Running VM is "paused". */
  if (paused == vm->paused)
    return;
  vm->paused = paused;
  vmlet_attach_ctl_set_paused(vm->hot, paused);
  vm_changed(vm);
}

static void on_stop(VmletMonitor *mon, VmletVm *vm)
{
  on_pause_changed(vm, TRUE);
}

static void on_resume(VmletMonitor *mon, VmletVm *vm)
{
  on_pause_changed(vm, FALSE);
}

void vm_watch_monitor(VmletVm *vm, VmletMonitor *mon)
{
  g_signal_connect_object(mon, "shutdown", G_CALLBACK(on_shutdown), vm, 0);
  g_signal_connect_object(mon, "stop", G_CALLBACK(on_stop), vm, 0);
  g_signal_connect_object(mon, "resume", G_CALLBACK(on_resume), vm, 0);
}

/* ---- QEMU's end ---- */

static gboolean on_backoff(gpointer data)
{
  VmletVm *vm = data;
  vm->backoff_timer = 0;
  vmlet_vm_reconcile(vm);
  return G_SOURCE_REMOVE;
}

void vm_schedule_restart(VmletVm *vm)
{
  if (!vm_want_running(vm)) {
    vm_changed(vm);
    return;
  }
  gint64 now = g_get_monotonic_time();
  if (vm->running_since_mono_us &&
      now - vm->running_since_mono_us > (gint64)VM_BACKOFF_RESET_S * G_USEC_PER_SEC)
    vm->backoff_s = VM_BACKOFF_MIN_S;
  vm->running_since_mono_us = 0;
  vm->rec->restarts++;
  vm_save(vm);
  vm->backoff_timer = g_timeout_add_seconds(vm->backoff_s, on_backoff, vm);
  vm->backoff_s = MIN(vm->backoff_s * 2, VM_BACKOFF_MAX_S);
  vm_changed(vm);
}

void vm_forget(VmletVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_clear_handle_id(&vm->hot_save, g_source_remove);
  if (!vm->held) {
    vm_host_cleanup(vm);
    vmlet_vm_record_delete(vm->env->node->state_dir, vm->namespace, vm->name, &error);
  }
  vm_set_phase(vm, VM_PHASE_TERMINATING);
  vm_emit_gone(vm);
}

/* A List left in place still defines the VM: the tombstone keeps it from starting here. */
void vm_put_aside(const char *path, const char *target)
{
  g_autoptr(GPtrArray) objs = path ? vmlet_objects_load_file(path, FALSE, NULL, NULL) : NULL;
  if (!objs || objs->len != 1)
    return;
  g_autofree char *aside = g_strdup_printf("%s.migrated-to-%s", path, target);
  g_rename(path, aside);
}

void vm_forget_migrated(VmletVm *vm, const char *target)
{
  /* The tombstone is already there (written as the hand-over began). */
  vm_put_aside(vm->source, target);
  g_autoptr(GPtrArray) atts = vmlet_inventory_attachments(vm->env->inv);
  for (guint i = 0; i < atts->len; i++) {
    VmletAttachment *att = atts->pdata[i];
    if (!g_str_equal(att->meta.namespace, vm->namespace) || !g_str_equal(att->vm_name, vm->name))
      continue;
    g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
    vm_put_aside(g_hash_table_lookup(vm->env->inv->attachment_sources, id), target);
  }
  g_clear_handle_id(&vm->hot_save, g_source_remove);
  vm_host_cleanup(vm);
  vmlet_vm_record_delete(vm->env->node->state_dir, vm->namespace, vm->name, NULL);
  /* Completed once nothing of it is left here: QEMU gone, copies and drop-ins aside. */
  vm_ops_complete(vm, VM_OP_EVICT, TRUE, NULL);
  vm_ops_complete(vm, VM_OP_MIGRATE, TRUE, NULL);
  mig_state_end(vm, "Succeeded", NULL);
  /* The last word of this node's watchers: the VM runs on target. */
  vm_set_str(&vm->moved_to, target);
  vm_set_phase(vm, VM_PHASE_RUNNING);
  vm_changed(vm);
  vm_emit_gone(vm);
}

/* How the stop went, on the Stop operation: graceful is what the grace period is for. */
static const char *stop_how(VmStopEnd end)
{
  switch (end) {
  case VM_STOP_END_BY_GUEST:
    return "the guest powered off after the ACPI power button";
  case VM_STOP_END_GRACE_EXPIRED:
    return "the guest did not power off within terminationGracePeriodSeconds; QEMU was "
           "stopped";
  case VM_STOP_END_FORCED:
    break;
  }
  return "QEMU was stopped without waiting for the guest";
}

/* QEMU went away without being asked: a crash. Manual VMs run only by operations, so a
 * crash leaves them stopped, like a stop would. */
static void crashed(VmletVm *vm, VmletExitCause cause, const char *how)
{
  if (vm->spec && vm->spec->run_policy == VM_RUN_POLICY_MANUAL)
    vm->rec->stopped_manually = TRUE;
  g_free(vm->last_exit);
  switch (cause) {
  case VMLET_EXIT_NOT_PLACED:
  case VMLET_EXIT_NO_MONITOR:
    vm->last_exit = g_strdup(how);
    break;
  case VMLET_EXIT_STATUS:
  case VMLET_EXIT_UNKNOWN:
    vm->last_exit = g_strdup_printf("QEMU exited unexpectedly (%s)", how);
    break;
  }
  vm_ops_complete(vm, VM_OP_START, FALSE, vm->last_exit);
  vm_ops_complete(vm, VM_OP_RESTART, FALSE, vm->last_exit);
  vm_set_phase(vm, VM_PHASE_STOPPED);
  vm_schedule_restart(vm);
}

static void on_exited(VmletInstance *qemu, gint cause, const char *how, VmletVm *vm)
{
  g_signal_handlers_disconnect_by_data(qemu, vm);
  g_clear_object(&vm->qemu);
  /* The hot-plugged devices went with QEMU; a next start brings the wanted ones back. */
  vmlet_attach_ctl_deactivate(vm->hot);
  vm->paused = FALSE;
  vmlet_attach_ctl_set_paused(vm->hot, FALSE);
  g_clear_handle_id(&vm->grace_timer, g_source_remove);
  VmJob job = vm->job;
  /* A migration's QEMU: handed over (the VM is gone from here), or a crash in the middle,
   * which the run policy then treats as any other. */
  if ((job.kind == VM_JOB_MIGRATE_OUT && vm_migrate_out_exited(vm)) ||
      (job.kind == VM_JOB_MIGRATE_IN && vm_migrate_in_exited(vm)))
    return;
  VmStopEnd end = vm->stop_end;
  vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
  vm->rec->proc.pid = 0;
  vm->rec->proc.start_time = 0;
  g_clear_pointer(&vm->rec->cgroup, g_free);
  g_clear_pointer(&vm->plan, vm_plan_unref);
  g_clear_pointer(&vm->rec->started_spec, json_node_unref);
  if (job.kind != VM_JOB_STOP) {
    crashed(vm, (VmletExitCause)cause, how);
    return;
  }
  switch (job.intent) {
  case VM_STOP_DELETE:
    vm_forget(vm);
    return;
  case VM_STOP_USER:
  case VM_STOP_RESTART:
    vm_set_phase(vm, VM_PHASE_STOPPED);
    vm_ops_complete(vm, VM_OP_STOP, TRUE, stop_how(end));
    if (job.intent == VM_STOP_RESTART) {
      vmlet_vm_reconcile(vm);
      return;
    }
    /* A start or restart asked before this stop came did not happen. */
    vm_ops_complete(vm, VM_OP_START, FALSE, "a Stop operation stopped the VM first");
    vm_ops_complete(vm, VM_OP_RESTART, FALSE, "a Stop operation stopped the VM first");
    /* A user's Stop and a policy that wants the VM off leave it unwanted: nothing
     * happens. A drain's --force stop leaves it wanted: Pending NodeCordoned, or, when
     * the node was uncordoned during the stop, started again. */
    vmlet_vm_reconcile(vm);
    return;
  case VM_STOP_GUEST:
    /* The guest powered itself off. AlwaysOn starts it again; for the others it counts as
     * a manual stop (DVP: the VM stays Stopped until started). */
    vm_set_str(&vm->last_exit, "the guest powered off");
    if (vm->spec && vm->spec->run_policy != VM_RUN_POLICY_ALWAYS_ON)
      vm->rec->stopped_manually = TRUE;
    vm_set_phase(vm, VM_PHASE_STOPPED);
    vmlet_vm_reconcile(vm);
    return;
  }
}

void vm_on_exited(VmletInstance *qemu, gint cause, const char *how, VmletVm *vm)
{
  /* A deleted VM's "gone" may drop the manager's reference while this runs. (A reference
   * held only by an autoptr is an unused variable to clang -Werror.) */
  g_object_ref(vm);
  on_exited(qemu, cause, how, vm);
  g_object_unref(vm);
}
