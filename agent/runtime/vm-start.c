/* A VM start in the named steps of libvirt's qemuProcessStart:
 *
 *   1. prepare spec  the plan from the spec, its class, disks and images and the node;
 *                    this node matches the VM's placement; its cgroups can be made
 *   2. prepare host  run dir, seed ISO, NVRAM, QEMU's log; files handed to QEMU's user
 *                    (vm-host.c)
 *   3. launch        QEMU spawned at its gate, placed in its cgroup, let go to exec; a
 *                    normal start is paused (-S), an incoming one waits for a migration
 *                    (-incoming defer)
 *   4. finish        once QMP answers: the machine type recorded, `cont`, Running
 *
 * A failure in steps 1-3 leaves the VM Pending with the reason and no QEMU. The START job
 * holds the slot from the launch until Running. Adopting a QEMU after a restart of vmletd
 * joins at step 4 with query-status instead of cont. */
#include "vm-private.h"

#include "fileio.h"
#include "qemu-argv.h"
#include "vm-migrate.h"
#include "vmlet-error.h"

/* QEMU's confinement, prepared once (the user may be created after vmletd started, so a
 * failure is not kept). */
VmletConfine *vm_confinement(VmletVm *vm, GError **error)
{
  if (!vm->env->confine)
    vm->env->confine = vmlet_confine_new(vm->env->node->qemu_user, error);
  return vm->env->confine;
}

/* ---- 4. finish ---- */

static void on_cont(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = vmlet_monitor_finish(VMLET_MONITOR(src), res, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !vm->qemu ||
      vm->job.kind != VM_JOB_START)
    return;
  if (!ok) {
    vm_set_str(&vm->last_exit, error->message);
    vmlet_instance_quit(vm->qemu);
    return;
  }
  vm->running_since_mono_us = g_get_monotonic_time();
  if (vm->spawn_mono_us)
    vm->rec->launch_us = vm->running_since_mono_us - vm->spawn_mono_us;
  g_clear_pointer(&vm->last_exit, g_free);
  vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
  /* Running changes the record's phase, history and job only: its pid was synced at
   * Starting. The rename keeps the write atomic for a restarted vmletd; an fsync would only
   * guard against a host crash, which ends this QEMU too, and it delayed every start by a
   * disk flush (tests/bench/bench_daemon.py). */
  vm->unsynced_save = TRUE;
  vm_set_phase(vm, VM_PHASE_RUNNING);
  vm->unsynced_save = FALSE;
  vm_ops_complete(vm, VM_OP_START, TRUE, NULL);
  vm_ops_complete(vm, VM_OP_RESTART, TRUE, NULL);
  vmlet_attach_ctl_activate(vm->hot, vmlet_instance_get_monitor(vm->qemu));
}

typedef struct {
  VmletVm *vm;
  char *requested; /* the class's machine, e.g. the alias "q35" */
} MachineQuery;

static void on_machine(GObject *src, GAsyncResult *res, gpointer data)
{
  MachineQuery *q = data;
  g_autoptr(VmletVm) vm = q->vm;
  g_autofree char *requested = q->requested;
  g_free(q);
  /* Not knowing it costs only the pinning: the next start resolves the alias again. */
  g_autofree char *machine = vmlet_monitor_query_machine_finish(VMLET_MONITOR(src), res, NULL);
  if (!machine || !vm->qemu)
    return;
  /* Saved with the Running that follows (the reply comes before cont's). */
  vm_set_str(&vm->rec->machine_alias, requested);
  vm_set_str(&vm->rec->machine, machine);
}

static void on_ready(VmletInstance *qemu, VmletVm *vm)
{
  VmletMonitor *mon = vmlet_instance_get_monitor(qemu);
  vm_watch_monitor(vm, mon);
  GCancellable *c = vmlet_instance_get_cancellable(qemu);
  MachineQuery *q = g_new0(MachineQuery, 1);
  q->vm = g_object_ref(vm);
  q->requested = g_strdup(vm->rec->machine_alias ? vm->rec->machine_alias : vm->plan->machine);
  vmlet_monitor_query_machine(mon, c, on_machine, q);
  /* An incoming QEMU gets its state from the migration and resumes at the commit. */
  if (vm->plan->incoming)
    vm_migrate_in_ready(vm);
  else
    vmlet_monitor_cont(mon, c, on_cont, g_object_ref(vm));
}

static void on_placed(VmletInstance *qemu, const char *location, VmletVm *vm)
{
  vm_set_str(&vm->rec->cgroup, location);
  vm_save(vm);
}

/* ---- 1. prepare spec ---- */

/* The machine type as the record pinned it, when the class still asks for what was
 * resolved then: later starts run the same type (libvirt pins it at define time). */
static void pin_machine(VmletVm *vm, VmPlan *plan)
{
  const VmletVmRecord *r = vm->rec;
  if (r->machine && r->machine_alias && g_str_equal(plan->machine, r->machine_alias)) {
    g_free(plan->machine);
    plan->machine = g_strdup(r->machine);
  } else {
    g_clear_pointer(&vm->rec->machine_alias, g_free);
    g_clear_pointer(&vm->rec->machine, g_free);
  }
}

static VmPlan *prepare_spec(VmletVm *vm, VmStartMode mode, GError **error)
{
  g_autoptr(VmletDiag) d = vmlet_diag_new(vm->source);
  g_autoptr(VmPlan) plan = vm_plan_build(vm->spec, vm->env->inv, vm->env->node, d);
  g_autofree char *mismatch = NULL;
  if (!plan) {
    vmlet_diag_check(d, error);
    return NULL;
  }
  if (!vm_spec_matches_node(vm->spec, vm->env->node->labels, &mismatch)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "this node does not match: %s",
                mismatch);
    return NULL;
  }
  if (!vm->env->cgroups) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s", vm->env->cgroups_problem);
    return NULL;
  }
  pin_machine(vm, plan);
  plan->incoming = mode == VM_START_INCOMING;
  /* The attachments come back with the VM: in its argv, outside the boot order. */
  vmlet_attach_ctl_plan(vm->hot, plan);
  return g_steal_pointer(&plan);
}

/* ---- 3. launch ---- */

static VmletInstance *launch(VmletVm *vm, const VmPlan *plan, const VmletConfine *confine,
                             int log_fd, GError **error)
{
  VmResources res;
  vm_resources_compute(vm->spec, plan->accel, vm->env->node->cpu_limit, &res);
  g_auto(GStrv) argv = vm_qemu_argv(plan);
  VmletInstanceSpawn how = {
      .argv = (const char *const *)argv,
      .log_fd = log_fd,
      .confine = confine,
      .cgroups = vm->env->cgroups,
      .namespace = vm->namespace,
      .name = vm->name,
      .resources = &res,
      .qmp_socket = plan->qmp_socket,
  };
  vm->spawn_mono_us = g_get_monotonic_time();
  return vmlet_instance_spawn(&how, error);
}

static void start_failed(VmletVm *vm, const char *why)
{
  vm_set_str(&vm->problem, why);
  vm_ops_complete(vm, VM_OP_START, FALSE, why);
  vm_ops_complete(vm, VM_OP_RESTART, FALSE, why);
  vm_set_phase(vm, VM_PHASE_PENDING);
  vm_changed(vm);
}

/* QEMU was gone before vmlet could watch it: a crash at start, retried like one. */
static void exited_at_start(VmletVm *vm, const VmPlan *plan, const char *why)
{
  g_free(vm->last_exit);
  vm->last_exit = g_strdup_printf("%s; see %s/qemu.log", why, plan->runtime_dir);
  vmlet_attach_ctl_deactivate(vm->hot);
  vm_set_phase(vm, VM_PHASE_STARTING);
  vm_set_phase(vm, VM_PHASE_STOPPED);
  vm_schedule_restart(vm);
}

static void watch_instance(VmletVm *vm, VmletInstance *qemu)
{
  vm->qemu = qemu;
  g_signal_connect(qemu, "placed", G_CALLBACK(on_placed), vm);
  g_signal_connect(qemu, "exited", G_CALLBACK(vm_on_exited), vm);
}

void vm_start(VmletVm *vm, VmStartMode mode)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmPlan) plan = prepare_spec(vm, mode, &error);
  VmletConfine *confine = plan ? vm_confinement(vm, &error) : NULL;
  vmlet_attach_ctl_set_confine(vm->hot, confine);
  if (confine)
    g_clear_pointer(&vm->confine_error, g_free);
  vmlet_autofd log_fd = -1;
  if (confine)
    vm_host_prepare(vm, plan, confine, &log_fd, &error);
  if (error) {
    start_failed(vm, error->message);
    return;
  }
  VmletInstance *qemu = launch(vm, plan, confine, log_fd, &error);
  if (!qemu && !plan->incoming && g_error_matches(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND)) {
    exited_at_start(vm, plan, error->message);
    return;
  }
  if (!qemu) {
    start_failed(vm, error->message);
    return;
  }
  g_clear_pointer(&vm->problem, g_free);
  g_clear_pointer(&vm->resources_error, g_free);
  vm->plan = g_steal_pointer(&plan);
  vm->rec->proc = *vmlet_instance_get_id(qemu);
  vm_set_str(&vm->rec->qmp_socket, vm->plan->qmp_socket);
  vm_set_str(&vm->rec->runtime_dir, vm->plan->runtime_dir);
  g_clear_pointer(&vm->rec->started_spec, json_node_unref);
  vm->rec->started_spec = json_node_copy(vm->spec->spec_json);
  watch_instance(vm, qemu);
  g_signal_connect(qemu, "ready", G_CALLBACK(on_ready), vm);
  vmlet_attach_ctl_started(vm->hot, vm->plan);
  if (vm->plan->incoming) {
    /* The job is the migration's; the record naming the pid is synced all the same. */
    vm_save(vm);
    return;
  }
  vm_set_job(vm, VM_JOB_START, VM_STOP_USER, FALSE);
  /* The record that first names this QEMU's pid is synced before Starting is reported. */
  vm_set_phase(vm, VM_PHASE_STARTING);
}

/* ---- adopting ---- */

/* The plan of an adopted QEMU, built again from the spec it started from (the record's):
 * plans are pure, so its node names, paths and devices are those QEMU has. A migration
 * needs it; without a usable spec the VM simply cannot migrate (Migratable says so). */
static void adopt_plan(VmletVm *vm)
{
  if (vm->plan || !vm->rec->started_spec || !vm->spec)
    return;
  g_autoptr(JsonObject) root = json_object_new();
  json_object_set_string_member(root, "apiVersion", "virtualization.deckhouse.io/v1alpha2");
  json_object_set_string_member(root, "kind", "VirtualMachine");
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", vm->name);
  json_object_set_string_member(md, "namespace", vm->namespace);
  json_object_set_object_member(root, "metadata", md);
  json_object_set_member(root, "spec", json_node_copy(vm->rec->started_spec));
  g_autoptr(VmletDiag) d = vmlet_diag_new(vm->source);
  g_autoptr(VmSpec) started = vm_spec_parse(root, d);
  VmPlan *plan = started ? vm_plan_build(started, vm->env->inv, vm->env->node, d) : NULL;
  if (!plan)
    return;
  if (vm->rec->machine) {
    g_free(plan->machine);
    plan->machine = g_strdup(vm->rec->machine);
  }
  vm->plan = plan;
}

static void on_adopted_status(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  VmletRunStatus st;
  if (!vmlet_monitor_query_status_finish(VMLET_MONITOR(src), res, &st, NULL) || !vm->qemu)
    return; /* QEMU is going away: its exit decides */
  VmletMonitor *mon = vmlet_instance_get_monitor(vm->qemu);
  adopt_plan(vm);
  if (vm->recovering) {
    /* A migration was under way: its journal decides, never the run state alone (an
     * incoming QEMU in prelaunch must not be started). */
    vm->running_since_mono_us = g_get_monotonic_time();
    vm->paused = !st.running;
    vmlet_attach_ctl_set_paused(vm->hot, vm->paused);
    vm_migrate_recover_act(vm);
    return;
  }
  switch (st.state) {
  case VMLET_RUN_STATE_PRELAUNCH:
    /* The agent stopped between exec and cont: finish the start. */
    vm_set_job(vm, VM_JOB_START, VM_STOP_USER, FALSE);
    vm_restore_phase(vm, VM_PHASE_STARTING);
    vmlet_monitor_cont(mon, vmlet_instance_get_cancellable(vm->qemu), on_cont,
                       g_object_ref(vm));
    return;
  case VMLET_RUN_STATE_SHUTDOWN:
    /* The guest powered off while the agent was away. */
    g_free(vm_request(vm, VM_REQ_GUEST_OFF, FALSE));
    return;
  case VMLET_RUN_STATE_OTHER:
  case VMLET_RUN_STATE_RUNNING:
  case VMLET_RUN_STATE_PAUSED:
  case VMLET_RUN_STATE_INMIGRATE:
  case VMLET_RUN_STATE_POSTMIGRATE:
  case VMLET_RUN_STATE_FINISH_MIGRATE:
    break;
  }
  vm->running_since_mono_us = g_get_monotonic_time();
  /* A VM paused before vmletd restarted stays paused; say so. */
  vm->paused = !st.running;
  vmlet_attach_ctl_set_paused(vm->hot, vm->paused);
  if (vm->job.kind == VM_JOB_STOP) {
    /* vmletd died during a stop: carry it on, from its first step. */
    vm_restore_phase(vm, vm_deleting(vm) ? VM_PHASE_TERMINATING : VM_PHASE_STOPPING);
    vm_stop_begin(vm);
    return;
  }
  vm_set_job(vm, VM_JOB_NONE, VM_STOP_USER, FALSE);
  vm_restore_phase(vm, VM_PHASE_RUNNING);
  /* Re-adopted: its hot-plugged devices are checked against QEMU, never plugged again. */
  vmlet_attach_ctl_activate(vm->hot, mon);
  vmlet_vm_reconcile(vm);
}

static void on_adopted_ready(VmletInstance *qemu, VmletVm *vm)
{
  VmletMonitor *mon = vmlet_instance_get_monitor(qemu);
  vm_watch_monitor(vm, mon);
  vmlet_monitor_query_status(mon, vmlet_instance_get_cancellable(qemu), on_adopted_status,
                             g_object_ref(vm));
}

void vm_start_adopt(VmletVm *vm, VmletInstance *qemu)
{
  watch_instance(vm, qemu);
  g_signal_connect(qemu, "ready", G_CALLBACK(on_adopted_ready), vm);
  vm_sync_attachments(vm);
  /* Disks attached from now on are given to QEMU's user like those it started with. */
  g_autoptr(GError) error = NULL;
  VmletConfine *confine = vm_confinement(vm, &error);
  vm_set_str(&vm->confine_error, confine ? NULL : error->message);
  vmlet_attach_ctl_set_confine(vm->hot, confine);
}
