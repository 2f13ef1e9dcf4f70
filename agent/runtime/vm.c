/* The VM object: what it is given (spec, warnings, attachments, its record), and the
 * reconcile that turns the desired state into requests. How it starts, stops, reports and
 * takes operations is in the other vm-*.c files (vm-private.h lists them). */
#include "vm-private.h"

#include <stdarg.h>
#include <string.h>

#include "vm-migrate.h"
#include "vmlet-error.h"

enum { SIGNAL_CHANGED, SIGNAL_GONE, SIGNAL_NOTE, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletVm, vmlet_vm, G_TYPE_OBJECT)

/* GLib 2.76's g_set_str, which 2.74 lacks. */
void vm_set_str(char **slot, const char *value)
{
  if (*slot == value)
    return;
  char *copy = g_strdup(value);
  g_free(*slot);
  *slot = copy;
}

void vm_changed(VmletVm *vm)
{
  g_signal_emit(vm, signals[SIGNAL_CHANGED], 0);
}

void vm_emit_gone(VmletVm *vm)
{
  g_signal_emit(vm, signals[SIGNAL_GONE], 0);
}

void vm_note(VmletVm *vm, int priority, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *text = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_signal_emit(vm, signals[SIGNAL_NOTE], 0, priority, text);
}

static void on_hot_changed(VmletAttachCtl *hot, VmletVm *vm);

static void vmlet_vm_dispose(GObject *obj)
{
  VmletVm *vm = VMLET_VM(obj);
  if (vm->qemu) {
    g_signal_handlers_disconnect_by_data(vm->qemu, vm);
    g_clear_object(&vm->qemu);
  }
  g_clear_handle_id(&vm->grace_timer, g_source_remove);
  g_clear_handle_id(&vm->backoff_timer, g_source_remove);
  g_clear_handle_id(&vm->hot_save, g_source_remove);
  if (vm->hot) {
    g_signal_handlers_disconnect_by_data(vm->hot, vm);
    g_clear_object(&vm->hot);
  }
  G_OBJECT_CLASS(vmlet_vm_parent_class)->dispose(obj);
}

static void vmlet_vm_finalize(GObject *obj)
{
  VmletVm *vm = VMLET_VM(obj);
  g_free(vm->namespace);
  g_free(vm->name);
  g_clear_pointer(&vm->spec, vm_spec_unref);
  g_free(vm->source);
  g_free(vm->problem);
  g_strfreev(vm->warnings);
  vmlet_vm_record_free(vm->rec);
  g_clear_pointer(&vm->plan, vm_plan_unref);
  g_free(vm->last_exit);
  g_free(vm->save_error);
  g_free(vm->held);
  g_free(vm->resources_error);
  g_free(vm->confine_error);
  g_ptr_array_unref(vm->ops);
  g_free(vm->moved_to);
  g_clear_pointer(&vm->carried_seed, g_bytes_unref);
  g_clear_pointer(&vm->carried_nvram, g_bytes_unref);
  vm_migration_free(vm); /* status.migrationState, once the VM has migrated */
  G_OBJECT_CLASS(vmlet_vm_parent_class)->finalize(obj);
}

static void vmlet_vm_class_init(VmletVmClass *klass)
{
  G_OBJECT_CLASS(klass)->dispose = vmlet_vm_dispose;
  G_OBJECT_CLASS(klass)->finalize = vmlet_vm_finalize;
  signals[SIGNAL_CHANGED] = g_signal_new("changed", VMLET_TYPE_VM, G_SIGNAL_RUN_LAST, 0, NULL,
                                         NULL, NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_GONE] = g_signal_new("gone", VMLET_TYPE_VM, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                      NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_NOTE] = g_signal_new("note", VMLET_TYPE_VM, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                      NULL, G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_STRING);
}

static void vmlet_vm_init(VmletVm *vm)
{
  vm->ops = g_ptr_array_new_with_free_func(vm_op_free);
  vm->backoff_s = VM_BACKOFF_MIN_S;
}

VmletVm *vmlet_vm_new(const char *namespace, const char *name, VmletVmEnv *env)
{
  VmletVm *vm = g_object_new(VMLET_TYPE_VM, NULL);
  vm->env = env;
  vm->namespace = g_strdup(namespace);
  vm->name = g_strdup(name);
  vm->rec = vmlet_vm_record_new(namespace, name);
  vm->phase = VM_PHASE_PENDING;
  vm->hot = vmlet_attach_ctl_new(namespace, name, env->node, &env->inv);
  g_signal_connect(vm->hot, "changed", G_CALLBACK(on_hot_changed), vm);
  vm_sync_attachments(vm);
  return vm;
}

const char *vmlet_vm_get_namespace(VmletVm *vm)
{
  return vm->namespace;
}

const char *vmlet_vm_get_name(VmletVm *vm)
{
  return vm->name;
}

VmSpec *vmlet_vm_get_spec(VmletVm *vm)
{
  return vm->spec;
}

const char *vmlet_vm_get_source(VmletVm *vm)
{
  return vm->source;
}

VmPhase vmlet_vm_get_phase(VmletVm *vm)
{
  return vm->phase;
}

gboolean vm_qemu_alive(VmletVm *vm)
{
  return vm->qemu != NULL;
}

gboolean vm_deleting(VmletVm *vm)
{
  return vm->phase == VM_PHASE_TERMINATING;
}

gboolean vmlet_vm_runs_here(VmletVm *vm)
{
  return vm->qemu && !vm->moved_to && vm->job.kind != VM_JOB_MIGRATE_IN;
}

gboolean vmlet_vm_is_migrating_out(VmletVm *vm)
{
  return vm->mig_out != NULL;
}

gboolean vm_want_running(VmletVm *vm)
{
  if (vm_deleting(vm) || !vm->spec || vm->held || vm->job.kind == VM_JOB_MIGRATE_IN)
    return FALSE;
  switch (vm->spec->run_policy) {
  case VM_RUN_POLICY_ALWAYS_ON:
    return TRUE;
  case VM_RUN_POLICY_ALWAYS_OFF:
    return FALSE;
  case VM_RUN_POLICY_ALWAYS_ON_UNLESS_STOPPED_MANUALLY:
  case VM_RUN_POLICY_MANUAL:
    return !vm->rec->stopped_manually;
  }
  return FALSE;
}

/* ---- attachments ---- */

static gboolean on_hot_save(gpointer data)
{
  VmletVm *vm = data;
  vm->hot_save = 0;
  vm_save(vm);
  return G_SOURCE_REMOVE;
}

/* The attachments changed. Unlike the rest of the record, their devices are written just
 * after the change is reported, not before: an fsync here would delay every Attached by
 * milliseconds, and a record that missed a device is safe, because a restarted vmletd asks
 * QEMU and adopts a device of a wanted attachment rather than plugging it twice
 * (attachctl.c, on_probed). */
static void on_hot_changed(VmletAttachCtl *hot, VmletVm *vm)
{
  g_autoptr(JsonNode) now = vmlet_attach_ctl_record(hot);
  JsonArray *arr = json_node_get_array(now);
  gboolean empty = json_array_get_length(arr) == 0;
  gboolean same = vm->rec->hotplugged ? json_node_equal(now, vm->rec->hotplugged) : empty;
  if (!same) {
    g_clear_pointer(&vm->rec->hotplugged, json_node_unref);
    if (!empty)
      vm->rec->hotplugged = g_steal_pointer(&now);
    if (!vm->hot_save)
      vm->hot_save = g_idle_add_full(G_PRIORITY_LOW, on_hot_save, vm, NULL);
  }
  vm_changed(vm);
}

void vmlet_vm_set_attachments(VmletVm *vm, GPtrArray *attachments, GHashTable *conflicts,
                              gboolean retry)
{
  vmlet_attach_ctl_set_desired(vm->hot, attachments, conflicts, retry);
}

VmletAttachCtl *vmlet_vm_get_attachments(VmletVm *vm)
{
  return vm->hot;
}

/* ---- inputs ---- */

/* Why an adopted VM has no QEMU (vmlet_vm_adopt). */
static const char exited_away[] = "QEMU exited while vmletd was not running";

void vmlet_vm_set_spec(VmletVm *vm, VmSpec *spec, const char *source, const char *problem)
{
  gboolean first = vm->spec == NULL && vm->source == NULL;
  g_clear_pointer(&vm->spec, vm_spec_unref);
  vm->spec = spec ? vm_spec_ref(spec) : NULL;
  vm_set_str(&vm->source, source);
  vm_set_str(&vm->problem, problem);
  /* Manual VMs start stopped: only a Start operation runs them. */
  if (first && spec && spec->run_policy == VM_RUN_POLICY_MANUAL && vm->rec->proc.pid == 0 &&
      g_str_equal(vm->rec->phase, "Pending"))
    vm->rec->stopped_manually = TRUE;
  /* A Manual VM whose QEMU ended while vmletd was away stays stopped, as after any crash
   * (vm-stop.c): the adoption could not tell, its spec is known only now. Saved, or a
   * second restart of vmletd would start it. */
  if (first && spec && spec->run_policy == VM_RUN_POLICY_MANUAL && vm->rec->proc.pid == 0 &&
      g_strcmp0(vm->last_exit, exited_away) == 0 && !vm->rec->stopped_manually) {
    vm->rec->stopped_manually = TRUE;
    vm_save(vm);
  }
  vm_sync_attachments(vm);
  vm_changed(vm);
}

void vmlet_vm_set_warnings(VmletVm *vm, GPtrArray *warnings)
{
  guint n = warnings ? warnings->len : 0;
  gboolean same = vm->warnings ? g_strv_length(vm->warnings) == n : n == 0;
  for (guint i = 0; same && i < n; i++)
    same = g_str_equal(vm->warnings[i], warnings->pdata[i]);
  if (same)
    return;
  g_strfreev(vm->warnings);
  vm->warnings = NULL;
  if (n) {
    vm->warnings = g_new0(char *, n + 1);
    for (guint i = 0; i < n; i++)
      vm->warnings[i] = g_strdup(warnings->pdata[i]);
  }
  vm_changed(vm);
}

/* ---- the record, at vmletd's start ---- */

void vmlet_vm_adopt(VmletVm *vm, VmletVmRecord *record)
{
  vmlet_vm_record_free(vm->rec);
  vm->rec = record;
  /* A damaged entry is dropped: once QMP is up, the probe still finds the device of any
   * attachment that wants it (attachctl.c), so nothing is plugged twice. */
  vmlet_attach_ctl_load(vm->hot, record->hotplugged, NULL);
  VmPhase phase = VM_PHASE_PENDING;
  vm_phase_from_name(record->phase, &phase);
  vm->phase = phase;
  VmJob job = {VM_JOB_NONE, VM_STOP_USER, FALSE};
  vm_job_parse(record->job, record->job_intent, record->job_force, &job);
  vm->job = job;
  if (record->proc.pid == 0) {
    if (vm->phase != VM_PHASE_PENDING)
      vm->phase = VM_PHASE_STOPPED;
    vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
    vmlet_attach_ctl_deactivate(vm->hot);
    vm_sync_attachments(vm);
    return;
  }
  g_autoptr(GError) error = NULL;
  VmletInstance *qemu = vmlet_instance_adopt(&record->proc, record->qmp_socket,
                                             vm->env->cgroups, record->cgroup, &error);
  if (!qemu) {
    /* What it was doing is moot; a wanted VM is started again by the next reconcile. */
    vm_set_str(&vm->last_exit, exited_away);
    record->proc.pid = 0;
    vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
    vmlet_attach_ctl_deactivate(vm->hot);
    if (vm->env->cgroups && record->cgroup)
      vmlet_cgroups_remove(vm->env->cgroups, record->cgroup);
    g_clear_pointer(&record->cgroup, g_free);
    vm->phase = phase == VM_PHASE_TERMINATING ? phase : VM_PHASE_STOPPED;
    vm_sync_attachments(vm);
    vmlet_vm_record_transition(record, vm_phase_name(vm->phase), g_get_real_time());
    vm_save(vm);
    if (vm_deleting(vm))
      vm_forget(vm);
    return;
  }
  vm_start_adopt(vm, qemu);
}

void vmlet_vm_hold(VmletVm *vm, const char *reason, const char *why)
{
  if (g_strcmp0(vm->held, why) == 0)
    return;
  vm_set_str(&vm->held, why);
  vm->held_reason = reason;
  vm_changed(vm);
}

/* ---- desired against actual ---- */

void vmlet_vm_reconcile(VmletVm *vm)
{
  /* An incoming VM is the migration's until it is committed here; an outgoing one whose
   * QEMU is gone may run on the destination until the peer says otherwise. */
  if (vm_deleting(vm) || vm->backoff_timer || vm->job.kind == VM_JOB_MIGRATE_IN ||
      (vm->job.kind == VM_JOB_MIGRATE_OUT && !vm->qemu))
    return;
  gboolean want = vm_want_running(vm);
  switch (vm->phase) {
  case VM_PHASE_PENDING:
  case VM_PHASE_STOPPED:
    if (want && !vm_qemu_alive(vm) && vm->env->cordoned)
      vm_set_phase(vm, VM_PHASE_PENDING); /* NodeCordoned (vm-status.c) */
    else if (want && !vm_qemu_alive(vm))
      vm_start(vm, VM_START_NORMAL);
    else if (!vm->spec && vm->phase != VM_PHASE_PENDING)
      vm_set_phase(vm, VM_PHASE_PENDING);
    else if (vm->spec && !want && vm->phase == VM_PHASE_PENDING && !vm->problem)
      vm_set_phase(vm, VM_PHASE_STOPPED);
    break;
  case VM_PHASE_RUNNING:
    vm_apply_core_fraction(vm);
    if (!want && vm->spec) {
      g_free(vm_request(vm, VM_REQ_STOP, FALSE));
    } else if (vm->spec && vm->spec->restart_approval == VM_RESTART_APPROVAL_AUTOMATIC &&
               !vm->env->cordoned) {
      /* restartApprovalMode Automatic: apply pending changes with a graceful restart; not
       * while cordoned, when the VM could not start again. */
      g_autoptr(JsonArray) changes = vm_pending_changes(vm);
      if (json_array_get_length(changes) > 0)
        g_free(vm_request(vm, VM_REQ_RESTART, FALSE));
    }
    break;
  case VM_PHASE_STARTING:
  case VM_PHASE_STOPPING:
  case VM_PHASE_TERMINATING:
  case VM_PHASE_MIGRATING:
    break;
  }
}

void vmlet_vm_delete(VmletVm *vm)
{
  if (vm_deleting(vm))
    return;
  g_clear_handle_id(&vm->backoff_timer, g_source_remove);
  g_free(vm_request(vm, VM_REQ_DELETE, FALSE));
}

/* ---- pause ---- */

static void on_paused(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(GTask) task = data;
  GError *error = NULL;
  if (vmlet_monitor_finish(VMLET_MONITOR(src), res, &error))
    g_task_return_boolean(task, TRUE);
  else
    g_task_return_error(task, error);
}

void vmlet_vm_pause_async(VmletVm *vm, gboolean pause, GAsyncReadyCallback callback,
                          gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(vm, NULL, callback, user_data);
  g_task_set_source_tag(task, vmlet_vm_pause_async);
  VmletMonitor *mon = vm->qemu ? vmlet_instance_get_monitor(vm->qemu) : NULL;
  if (vm->phase != VM_PHASE_RUNNING || !mon || vmlet_monitor_is_closed(mon)) {
    g_task_return_new_error(task, VMLET_ERROR, VMLET_ERROR_INVALID,
                            "%s: cannot be %s: it is %s", vm->name,
                            pause ? "paused" : "unpaused", vm_phase_name(vm->phase));
    return;
  }
  /* The STOP / RESUME event updates the status; a repeated request is harmless. */
  GCancellable *c = vmlet_instance_get_cancellable(vm->qemu);
  if (pause)
    vmlet_monitor_stop(mon, c, on_paused, g_steal_pointer(&task));
  else
    vmlet_monitor_cont(mon, c, on_paused, g_steal_pointer(&task));
}

gboolean vmlet_vm_pause_finish(VmletVm *vm, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, vm), FALSE);
  return g_task_propagate_boolean(G_TASK(result), error);
}
