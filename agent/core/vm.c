#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "strutil.h"
#include "attachctl.h"
#include "cgroup.h"
#include "confine.h"
#include "fileio.h"
#include "nocloud.h"
#include "plan.h"
#include "process.h"
#include "quantity.h"
#include "qemu-argv.h"
#include "qemu-access.h"
#include "qmp.h"
#include "resources.h"
#include "specdiff.h"
#include "vmlet-error.h"

/* QEMU creates its QMP socket within ~65 ms of exec here; 10 s covers a loaded host. */
#define QMP_CONNECT_TIMEOUT_MS 10000
/* Polled, not watched: a fresh QEMU's socket appears tens of ms after exec, and a start is
 * Running that much sooner the finer the poll (tests/bench/bench_daemon.py). 2 ms for the
 * first second, then 20 ms so a slow host is not flooded with connects. */
#define QMP_CONNECT_RETRY_FAST_MS 2
#define QMP_CONNECT_RETRY_MS 20
#define QMP_CONNECT_FAST_S 1
/* After `quit` (or a forced stop), how long QEMU gets before SIGKILL. */
#define QUIT_TIMEOUT_S 10
/* Crash-loop backoff: 1 s doubling to 5 min; reset after 10 min of stable running. */
#define BACKOFF_MIN_S 1
#define BACKOFF_MAX_S 300
#define BACKOFF_RESET_S 600
#define MAX_OPERATIONS 16

typedef enum {
  OP_PENDING,
  OP_IN_PROGRESS,
  OP_COMPLETED,
  OP_FAILED,
} OpPhase;

typedef struct {
  char *uid;
  VmOpType type;
  gboolean force;
  OpPhase phase;
  char *reason;
  gint64 created_us;
} VmOp;

struct _VmletVm {
  GObject parent;
  VmletVmEnv *env;
  char *namespace, *name;
  VmSpec *spec;          /* desired; NULL when the drop-in is unusable */
  char *source;          /* the drop-in file */
  char *problem;         /* why the VM cannot start, for the Pending condition */
  GStrv warnings;        /* about the desired spec, for status.warnings */
  VmPhase phase;
  VmletVmRecord *rec;    /* persisted runtime state */
  VmPlan *plan;          /* what the running QEMU was started from */
  int pidfd;
  guint pidfd_watch;
  int gate;              /* holds a new QEMU before exec until it is in its cgroup */
  char *resources_error; /* why a live change of them failed */
  char *place_error;     /* why the QEMU at the gate was let go to exit */
  gboolean is_child;     /* spawned by this agent (reapable) rather than adopted */
  VmletQmp *qmp;
  GCancellable *cancel;  /* QMP connect and commands of the current QEMU */
  gint64 connect_deadline_us;
  guint connect_retry;
  gint64 spawn_mono_us;
  /* Why QEMU is going away; decides what its exit means. */
  gboolean stop_requested;
  gboolean restart_after_stop;
  gboolean guest_shutdown;
  gboolean grace_expired;
  gboolean unsynced_save;  /* the next save may skip fsync (see on_cont) */
  gboolean deleting;
  guint grace_timer, kill_timer, backoff_timer;
  guint backoff_s;
  gint64 running_since_mono_us;
  char *last_exit;       /* "QEMU exited unexpectedly: ..." for the condition */
  char *save_error;      /* why the record could not be written, for its condition */
  GPtrArray *ops;        /* VmOp *, oldest first */
  VmletAttachCtl *hot;   /* its VirtualMachineBlockDeviceAttachments */
  gboolean paused;       /* QEMU's vCPUs stopped (QMP stop), from the STOP/RESUME events */
  guint hot_save;        /* the record write that follows a hotplug change */
};

enum { SIGNAL_CHANGED, SIGNAL_GONE, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletVm, vmlet_vm, G_TYPE_OBJECT)

static const char *const phase_names[] = {"Pending", "Starting", "Running", "Stopping",
                                          "Stopped", "Terminating"};
static const char *const op_type_names[] = {"Start", "Stop", "Restart"};
static const char *const op_phase_names[] = {"Pending", "InProgress", "Completed", "Failed"};

/* GLib 2.76's g_set_str, which 2.74 lacks. */
static void set_str(char **slot, const char *value)
{
  if (*slot == value)
    return;
  char *copy = g_strdup(value);
  g_free(*slot);
  *slot = copy;
}

const char *vm_phase_name(VmPhase phase)
{
  return phase_names[phase];
}

static void op_free(gpointer p)
{
  VmOp *op = p;
  g_free(op->uid);
  g_free(op->reason);
  g_free(op);
}

static void stop_watching(VmletVm *vm);
static void sync_attachments(VmletVm *vm);
static void on_hot_changed(VmletAttachCtl *hot, VmletVm *vm);

static void vmlet_vm_finalize(GObject *obj)
{
  VmletVm *vm = VMLET_VM(obj);
  stop_watching(vm);
  g_clear_handle_id(&vm->grace_timer, g_source_remove);
  g_clear_handle_id(&vm->kill_timer, g_source_remove);
  g_clear_handle_id(&vm->backoff_timer, g_source_remove);
  g_clear_handle_id(&vm->hot_save, g_source_remove);
  if (vm->hot) {
    g_signal_handlers_disconnect_by_data(vm->hot, vm);
    g_clear_object(&vm->hot);
  }
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
  g_free(vm->resources_error);
  g_free(vm->place_error);
  g_ptr_array_unref(vm->ops);
  G_OBJECT_CLASS(vmlet_vm_parent_class)->finalize(obj);
}

static void vmlet_vm_class_init(VmletVmClass *klass)
{
  G_OBJECT_CLASS(klass)->finalize = vmlet_vm_finalize;
  signals[SIGNAL_CHANGED] = g_signal_new("changed", VMLET_TYPE_VM, G_SIGNAL_RUN_LAST, 0, NULL,
                                         NULL, NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_GONE] = g_signal_new("gone", VMLET_TYPE_VM, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                      NULL, G_TYPE_NONE, 0);
}

static void vmlet_vm_init(VmletVm *vm)
{
  vm->pidfd = -1;
  vm->gate = -1;
  vm->ops = g_ptr_array_new_with_free_func(op_free);
  vm->backoff_s = BACKOFF_MIN_S;
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
  sync_attachments(vm);
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

/* ---- persistence and reporting ---- */

static void save(VmletVm *vm)
{
  g_autoptr(GError) error = NULL;
  /* The VM keeps running; the next successful save catches up. Until then the failure is
   * its own condition: a restarted agent could not re-adopt this VM from a stale record. */
  gboolean batched = vm->env->defer_sync && vm->rec->proc.pid == 0;
  gboolean sync = !batched && !vm->unsynced_save;
  vm->unsynced_save = FALSE;
  if (vmlet_vm_record_save(vm->rec, vm->env->node->state_dir, sync, &error)) {
    g_clear_pointer(&vm->save_error, g_free);
    vm->env->sync_pending = vm->env->sync_pending || batched;
  } else {
    set_str(&vm->save_error, error->message);
  }
}

static void changed(VmletVm *vm)
{
  g_signal_emit(vm, signals[SIGNAL_CHANGED], 0);
}

/* What the attachments need to know of their VM: its spec, and why it does not run. */
static void sync_attachments(VmletVm *vm)
{
  g_autofree char *why = NULL;
  if (vm->deleting)
    why = g_strdup_printf("VirtualMachine \"%s\" is being deleted", vm->name);
  else if (vm->phase != VM_PHASE_RUNNING)
    why = g_strdup_printf("VirtualMachine \"%s\" is %s; the device is attached when it runs",
                          vm->name, phase_names[vm->phase]);
  vmlet_attach_ctl_set_vm(vm->hot, vm->spec, why);
}

static gboolean on_hot_save(gpointer data)
{
  VmletVm *vm = data;
  vm->hot_save = 0;
  save(vm);
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
  changed(vm);
}

static void set_phase(VmletVm *vm, VmPhase phase)
{
  if (vm->phase == phase && g_str_equal(vm->rec->phase, phase_names[phase]))
    return;
  vm->phase = phase;
  sync_attachments(vm);
  vmlet_vm_record_transition(vm->rec, phase_names[phase], g_get_real_time());
  save(vm);
  changed(vm);
}

/* Moves operations of the given types forward when the VM reaches a phase. */
static void complete_ops(VmletVm *vm, VmOpType type, OpPhase result, const char *reason)
{
  for (guint i = 0; i < vm->ops->len; i++) {
    VmOp *op = vm->ops->pdata[i];
    if (op->type == type && (op->phase == OP_PENDING || op->phase == OP_IN_PROGRESS)) {
      op->phase = result;
      set_str(&op->reason, reason);
    }
  }
}

/* ---- the desired state ---- */

static gboolean want_running(VmletVm *vm)
{
  if (vm->deleting || !vm->spec)
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

static gboolean qemu_alive(VmletVm *vm)
{
  return vm->pidfd >= 0;
}

/* A digest of the Secret a seed is built from (sorted keys and values), so a changed
 * Secret is noticed without keeping its content. NULL when there is no such Secret. */
static char *secret_digest(VmletVm *vm)
{
  const VmSpec *spec = vm->spec;
  if (!spec || (spec->provisioning != VM_PROVISIONING_USER_DATA_REF &&
                spec->provisioning != VM_PROVISIONING_SYSPREP_REF))
    return NULL;
  VmletSecret *secret = vmlet_inventory_secret(vm->env->inv, spec->meta.namespace,
                                               spec->provisioning_secret, NULL);
  if (!secret)
    return NULL;
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  g_checksum_update(sum, (const guchar *)secret->type, -1);
  guint n = 0;
  g_autofree const char **keys = (const char **)g_hash_table_get_keys_as_array(secret->data, &n);
  qsort(keys, n, sizeof(char *), vmlet_compare_str_ptrs);
  for (guint i = 0; i < n; i++) {
    gsize len = 0;
    const guchar *data = g_bytes_get_data(g_hash_table_lookup(secret->data, keys[i]), &len);
    g_checksum_update(sum, (const guchar *)keys[i], (gssize)strlen(keys[i]) + 1);
    g_checksum_update(sum, data, (gssize)len);
  }
  return g_strdup(g_checksum_get_string(sum));
}

/* Changes to the spec that the running QEMU does not have yet, and a changed provisioning
 * Secret (its content never shown: only that it changed). */
static JsonArray *pending_changes(VmletVm *vm)
{
  if (!qemu_alive(vm) || !vm->spec || !vm->rec->started_spec)
    return json_array_new();
  JsonArray *changes = vmlet_spec_diff(vm->rec->started_spec, vm->spec->spec_json);
  g_autofree char *digest = secret_digest(vm);
  if (digest && vm->rec->provisioning_digest &&
      !g_str_equal(digest, vm->rec->provisioning_digest)) {
    gboolean sysprep = vm->spec->provisioning == VM_PROVISIONING_SYSPREP_REF;
    JsonObject *o = json_object_new();
    g_autofree char *cur = g_strdup_printf("Secret %s as of the last start",
                                           vm->spec->provisioning_secret);
    g_autofree char *want = g_strdup_printf("Secret %s as it is now",
                                            vm->spec->provisioning_secret);
    json_object_set_string_member(o, "currentValue", cur);
    json_object_set_string_member(o, "desiredValue", want);
    json_object_set_string_member(o, "operation", "replace");
    json_object_set_string_member(o, "path",
                                  sysprep ? "provisioning.sysprepRef" : "provisioning.userDataRef");
    json_array_add_object_element(changes, o);
  }
  return changes;
}

/* ---- resources ---- */

/* cores, coreFraction and memory of the spec the running QEMU was started with (specs
 * are stored with their defaults filled in, vmspec.c). */
static gboolean started_sizing(VmletVm *vm, VmSpec *out)
{
  JsonNode *started = vm->rec->started_spec;
  if (!started || !JSON_NODE_HOLDS_OBJECT(started))
    return FALSE;
  JsonObject *spec = json_node_get_object(started);
  JsonObject *cpu = json_object_get_object_member(spec, "cpu");
  JsonObject *mem = json_object_get_object_member(spec, "memory");
  if (!cpu || !mem)
    return FALSE;
  const char *fraction = json_object_get_string_member_with_default(cpu, "coreFraction", "");
  const char *size = json_object_get_string_member_with_default(mem, "size", "");
  const char *why = NULL;
  out->cores = (guint)json_object_get_int_member_with_default(cpu, "cores", 0);
  out->core_fraction = (guint)g_ascii_strtoull(fraction, NULL, 10);
  return out->cores > 0 && out->core_fraction > 0 &&
         vmlet_quantity_parse_bytes(size, &out->memory_bytes, &why);
}

static VmletAccel accel_of(VmletVm *vm)
{
  return vm->plan ? vm->plan->accel : vm->env->node->accel;
}

/* DVP applies a coreFraction change to a running VM at once unless it crosses 100%
 * (a whole core guaranteed or not). With the new weight and quota in QEMU's cgroup, the
 * started spec takes the new fraction, so it is no longer a change awaiting a restart. */
static void on_cpu_updated(GObject *src, GAsyncResult *res, gpointer data);

static void apply_core_fraction(VmletVm *vm)
{
  VmSpec running = {0};
  if (vm->phase != VM_PHASE_RUNNING || !vm->spec || !vm->rec->cgroup || !vm->env->cgroups ||
      vm->resources_error || !started_sizing(vm, &running))
    return;
  guint want = vm->spec->core_fraction;
  if (want == running.core_fraction || want == 100 || running.core_fraction == 100)
    return;
  running.core_fraction = want;
  VmResources r;
  vm_resources_compute(&running, accel_of(vm), vm->env->node->cpu_limit, &r);
  vmlet_cgroups_update_cpu_async(vm->env->cgroups, vm->rec->cgroup, &r, vm->cancel,
                                 on_cpu_updated, g_object_ref(vm));
}

static void on_cpu_updated(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  g_autoptr(GError) error = NULL;
  if (!vmlet_cgroups_update_cpu_finish(vm->env->cgroups, res, &error)) {
    if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      set_str(&vm->resources_error, error->message);
    changed(vm);
    return;
  }
  if (!vm->spec || !vm->rec->started_spec)
    return;
  JsonObject *cpu = json_object_get_object_member(json_node_get_object(vm->rec->started_spec),
                                                  "cpu");
  g_autofree char *fraction = g_strdup_printf("%u%%", vm->spec->core_fraction);
  json_object_set_string_member(cpu, "coreFraction", fraction);
  save(vm);
  changed(vm);
}

/* status.resources for the running QEMU (or the desired spec when none runs). */
static JsonNode *resources_json(VmletVm *vm)
{
  VmSpec sizing = {0};
  if (!qemu_alive(vm) || !started_sizing(vm, &sizing)) {
    if (!vm->spec)
      return NULL;
    sizing = *vm->spec;
  }
  VmResources r;
  vm_resources_compute(&sizing, accel_of(vm), vm->env->node->cpu_limit, &r);
  guint sockets = 0, per_socket = 0;
  vm_plan_topology(sizing.cores, &sockets, &per_socket);
  return vm_resources_status_json(&sizing, &r, sockets, per_socket);
}

/* ---- stopping ---- */

static void on_qmp_done(GObject *src, GAsyncResult *res, gpointer data)
{
  /* Errors here mean QEMU is going away anyway; its exit is what counts. */
  JsonNode *ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, NULL);
  if (ret)
    json_node_unref(ret);
}

static void qmp_send(VmletVm *vm, const char *command)
{
  if (vm->qmp && !vmlet_qmp_is_closed(vm->qmp))
    vmlet_qmp_execute_async(vm->qmp, command, NULL, NULL, on_qmp_done, NULL);
}

static gboolean on_kill_timeout(gpointer data)
{
  VmletVm *vm = data;
  vm->kill_timer = 0;
  if (qemu_alive(vm))
    kill(vm->rec->proc.pid, SIGKILL);
  return G_SOURCE_REMOVE;
}

static void force_stop(VmletVm *vm)
{
  g_clear_handle_id(&vm->grace_timer, g_source_remove);
  if (!qemu_alive(vm))
    return;
  /* quit lets QEMU flush and close images cleanly; SIGKILL if it does not. */
  if (vm->qmp && !vmlet_qmp_is_closed(vm->qmp))
    qmp_send(vm, "quit");
  else
    kill(vm->rec->proc.pid, SIGTERM);
  if (!vm->kill_timer)
    vm->kill_timer = g_timeout_add_seconds(QUIT_TIMEOUT_S, on_kill_timeout, vm);
}

static gboolean on_grace_timeout(gpointer data)
{
  VmletVm *vm = data;
  vm->grace_timer = 0;
  vm->grace_expired = TRUE;
  set_str(&vm->last_exit, "the guest did not power off within terminationGracePeriodSeconds");
  force_stop(vm);
  return G_SOURCE_REMOVE;
}

static void begin_stop(VmletVm *vm, gboolean force)
{
  if (!qemu_alive(vm))
    return;
  vm->stop_requested = TRUE;
  if (vm->phase != VM_PHASE_TERMINATING)
    set_phase(vm, VM_PHASE_STOPPING);
  guint grace = vm->spec ? vm->spec->termination_grace_seconds
                         : VM_DEFAULT_TERMINATION_GRACE_SECONDS;
  if (force || grace == 0 || vm->phase == VM_PHASE_STARTING || vm->guest_shutdown) {
    force_stop(vm);
    return;
  }
  /* ACPI power button first: the guest shuts down cleanly; a hard stop after the grace
   * period, as DVP's terminationGracePeriodSeconds says. */
  qmp_send(vm, "system_powerdown");
  if (!vm->grace_timer)
    vm->grace_timer = g_timeout_add_seconds(grace, on_grace_timeout, vm);
}

/* ---- QEMU's end ---- */

static void schedule_restart(VmletVm *vm);

static void stop_watching(VmletVm *vm)
{
  /* A QEMU still held at its gate is let go to exit, never to run. */
  vmlet_proc_release(vm->gate, FALSE);
  vm->gate = -1;
  g_clear_handle_id(&vm->pidfd_watch, g_source_remove);
  g_clear_handle_id(&vm->connect_retry, g_source_remove);
  if (vm->cancel) {
    g_cancellable_cancel(vm->cancel);
    g_clear_object(&vm->cancel);
  }
  if (vm->qmp) {
    g_signal_handlers_disconnect_by_data(vm->qmp, vm);
    vmlet_qmp_close(vm->qmp);
    g_clear_object(&vm->qmp);
  }
  if (vm->pidfd >= 0) {
    close(vm->pidfd);
    vm->pidfd = -1;
  }
}

static char *describe_status(int status)
{
  if (WIFEXITED(status))
    return g_strdup_printf("exit status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return g_strdup_printf("killed by signal %d (%s)", WTERMSIG(status),
                           g_strsignal(WTERMSIG(status)));
  return g_strdup("unknown status");
}

/* A deleted VM leaves nothing in the run dir: sockets, its seed ISO, QEMU's log. The dir
 * holds only files vmlet and QEMU created, never subdirectories. */
static void remove_runtime_dir(VmletVm *vm)
{
  const char *dir = vm->rec->runtime_dir;
  if (!dir)
    return;
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name(d))) {
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_unlink(path);
  }
  g_rmdir(dir);
}

static void qemu_exited(VmletVm *vm)
{
  int status = 0;
  gboolean reaped = vm->is_child && vmlet_proc_reap(vm->pidfd, &status);
  /* The hot-plugged devices went with QEMU; a next start brings the wanted ones back. */
  vmlet_attach_ctl_deactivate(vm->hot);
  vm->paused = FALSE;
  vmlet_attach_ctl_set_paused(vm->hot, FALSE);
  stop_watching(vm);
  g_clear_handle_id(&vm->grace_timer, g_source_remove);
  g_clear_handle_id(&vm->kill_timer, g_source_remove);
  gboolean requested = vm->stop_requested, guest = vm->guest_shutdown;
  gboolean restart = vm->restart_after_stop, grace_expired = vm->grace_expired;
  vm->stop_requested = vm->guest_shutdown = vm->restart_after_stop = FALSE;
  vm->grace_expired = FALSE;
  vm->rec->proc.pid = 0;
  vm->rec->proc.start_time = 0;
  if (vm->env->cgroups)
    vmlet_cgroups_remove(vm->env->cgroups, vm->rec->cgroup);
  g_clear_pointer(&vm->rec->cgroup, g_free);
  g_clear_pointer(&vm->plan, vm_plan_unref);
  if (vm->rec->started_spec) {
    json_node_unref(vm->rec->started_spec);
    vm->rec->started_spec = NULL;
  }

  if (vm->deleting) {
    g_autoptr(GError) error = NULL;
    g_clear_handle_id(&vm->hot_save, g_source_remove);
    remove_runtime_dir(vm);
    vmlet_vm_record_delete(vm->env->node->state_dir, vm->namespace, vm->name, &error);
    set_phase(vm, VM_PHASE_TERMINATING);
    g_signal_emit(vm, signals[SIGNAL_GONE], 0);
    return;
  }
  if (requested) {
    /* How the stop ended, on the Stop operation: graceful is what the grace period is for. */
    const char *how = guest           ? "the guest powered off after the ACPI power button"
                      : grace_expired ? "the guest did not power off within "
                                        "terminationGracePeriodSeconds; QEMU was stopped"
                                      : "QEMU was stopped without waiting for the guest";
    set_phase(vm, VM_PHASE_STOPPED);
    complete_ops(vm, VM_OP_STOP, OP_COMPLETED, how);
    if (restart)
      vmlet_vm_reconcile(vm);
    return;
  }
  if (guest) {
    /* The guest powered itself off. AlwaysOn starts it again; for the others it counts as
     * a manual stop (DVP: the VM stays Stopped until started). */
    set_str(&vm->last_exit, "the guest powered off");
    if (vm->spec && vm->spec->run_policy != VM_RUN_POLICY_ALWAYS_ON)
      vm->rec->stopped_manually = TRUE;
    set_phase(vm, VM_PHASE_STOPPED);
    vmlet_vm_reconcile(vm);
    return;
  }
  /* Manual VMs run only by operations: a crash leaves them stopped, like a stop would. */
  if (vm->spec && vm->spec->run_policy == VM_RUN_POLICY_MANUAL)
    vm->rec->stopped_manually = TRUE;
  g_autofree char *how = reaped ? describe_status(status) : g_strdup("exit status unknown: "
                                                                     "QEMU was adopted");
  g_free(vm->last_exit);
  /* A QEMU that never got past its gate exited because it could not be placed. */
  vm->last_exit = vm->place_error ? g_steal_pointer(&vm->place_error)
                                  : g_strdup_printf("QEMU exited unexpectedly (%s)", how);
  complete_ops(vm, VM_OP_START, OP_FAILED, vm->last_exit);
  complete_ops(vm, VM_OP_RESTART, OP_FAILED, vm->last_exit);
  set_phase(vm, VM_PHASE_STOPPED);
  schedule_restart(vm);
}

static gboolean on_pidfd(gint fd, GIOCondition cond, gpointer data)
{
  VmletVm *vm = data;
  vm->pidfd_watch = 0;
  g_object_ref(vm);
  qemu_exited(vm);
  g_object_unref(vm);
  return G_SOURCE_REMOVE;
}

static gboolean on_backoff(gpointer data)
{
  VmletVm *vm = data;
  vm->backoff_timer = 0;
  vmlet_vm_reconcile(vm);
  return G_SOURCE_REMOVE;
}

/* After a crash: restart when the policy wants the VM running, after a doubling delay so a
 * VM that cannot run does not spin. */
static void schedule_restart(VmletVm *vm)
{
  if (!want_running(vm)) {
    changed(vm);
    return;
  }
  gint64 now = g_get_monotonic_time();
  if (vm->running_since_mono_us &&
      now - vm->running_since_mono_us > (gint64)BACKOFF_RESET_S * G_USEC_PER_SEC)
    vm->backoff_s = BACKOFF_MIN_S;
  vm->running_since_mono_us = 0;
  vm->rec->restarts++;
  save(vm);
  vm->backoff_timer = g_timeout_add_seconds(vm->backoff_s, on_backoff, vm);
  vm->backoff_s = MIN(vm->backoff_s * 2, BACKOFF_MAX_S);
  changed(vm);
}

/* ---- QMP ---- */

static void on_qmp_event(VmletQmp *qmp, const char *name, JsonObject *data, gint64 ts,
                         VmletVm *vm)
{
  if (g_str_equal(name, "SHUTDOWN")) {
    JsonNode *g = data ? json_object_get_member(data, "guest") : NULL;
    gboolean by_guest = g && JSON_NODE_HOLDS_VALUE(g) && json_node_get_boolean(g);
    /* -no-shutdown keeps QEMU alive after a guest power-off; end it, then decide. */
    if (by_guest && !vm->stop_requested) {
      vm->guest_shutdown = TRUE;
      force_stop(vm);
    } else if (by_guest) {
      vm->guest_shutdown = TRUE; /* a graceful stop we asked for has completed */
      force_stop(vm);
    }
  } else if (g_str_equal(name, "STOP") || g_str_equal(name, "RESUME")) {
    gboolean paused = g_str_equal(name, "STOP");
    /* The -S start's cont also sends RESUME; only a Running VM is "paused". */
    if (paused != vm->paused) {
      vm->paused = paused;
      vmlet_attach_ctl_set_paused(vm->hot, paused);
      changed(vm);
    }
  }
}

static void on_cont(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || vm->phase != VM_PHASE_STARTING)
    return;
  if (!ret) {
    set_str(&vm->last_exit, error->message);
    force_stop(vm);
    return;
  }
  vm->running_since_mono_us = g_get_monotonic_time();
  if (vm->spawn_mono_us)
    vm->rec->launch_us = vm->running_since_mono_us - vm->spawn_mono_us;
  g_clear_pointer(&vm->last_exit, g_free);
  /* Running changes the record's phase and history only: its pid was synced at Starting.
   * The rename keeps the write atomic for a restarted vmletd; an fsync would only guard
   * against a host crash, which ends this QEMU too, and it delayed every start by a disk
   * flush (tests/bench/bench_daemon.py). */
  vm->unsynced_save = TRUE;
  set_phase(vm, VM_PHASE_RUNNING);
  vm->unsynced_save = FALSE;
  complete_ops(vm, VM_OP_START, OP_COMPLETED, NULL);
  complete_ops(vm, VM_OP_RESTART, OP_COMPLETED, NULL);
  vmlet_attach_ctl_activate(vm->hot, vm->qmp);
}

static void on_adopted_status(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(VMLET_QMP(src), res, &error);
  if (!ret)
    return; /* QEMU is going away: its exit decides */
  const char *status = json_object_get_string_member_with_default(json_node_get_object(ret),
                                                                  "status", "");
  if (g_str_equal(status, "prelaunch")) {
    /* The agent stopped between exec and cont: finish the start. */
    set_phase(vm, VM_PHASE_STARTING);
    vmlet_qmp_execute_async(vm->qmp, "cont", NULL, vm->cancel, on_cont, g_object_ref(vm));
  } else if (g_str_equal(status, "shutdown")) {
    /* The guest powered off while the agent was away. */
    vm->guest_shutdown = TRUE;
    force_stop(vm);
  } else {
    vm->running_since_mono_us = g_get_monotonic_time();
    /* A VM paused before vmletd restarted stays paused; say so. */
    JsonNode *running = json_object_get_member(json_node_get_object(ret), "running");
    vm->paused = running && JSON_NODE_HOLDS_VALUE(running) &&
                 json_node_get_value_type(running) == G_TYPE_BOOLEAN &&
                 !json_node_get_boolean(running);
    vmlet_attach_ctl_set_paused(vm->hot, vm->paused);
    set_phase(vm, VM_PHASE_RUNNING);
    /* Re-adopted: its hot-plugged devices are checked against QEMU, never plugged again. */
    vmlet_attach_ctl_activate(vm->hot, vm->qmp);
    vmlet_vm_reconcile(vm);
  }
}

static gboolean try_connect(gpointer data);

static void on_qmp_connected(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  g_autoptr(GError) error = NULL;
  VmletQmp *qmp = vmlet_qmp_connect_finish(res, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !qemu_alive(vm)) {
    g_clear_object(&qmp);
    return;
  }
  if (!qmp) {
    if (g_get_monotonic_time() < vm->connect_deadline_us) {
      gint64 waited_us = g_get_monotonic_time() - (vm->connect_deadline_us -
                                                   (gint64)QMP_CONNECT_TIMEOUT_MS * 1000);
      guint ms = waited_us < QMP_CONNECT_FAST_S * G_USEC_PER_SEC ? QMP_CONNECT_RETRY_FAST_MS
                                                                 : QMP_CONNECT_RETRY_MS;
      vm->connect_retry = g_timeout_add(ms, try_connect, vm);
      return;
    }
    g_free(vm->last_exit);
    vm->last_exit = g_strdup_printf("no QMP connection: %s", error->message);
    force_stop(vm);
    return;
  }
  vm->qmp = qmp;
  g_signal_connect(qmp, "event", G_CALLBACK(on_qmp_event), vm);
  if (vm->phase == VM_PHASE_STARTING && vm->is_child)
    vmlet_qmp_execute_async(qmp, "cont", NULL, vm->cancel, on_cont, g_object_ref(vm));
  else
    vmlet_qmp_execute_async(qmp, "query-status", NULL, vm->cancel, on_adopted_status,
                            g_object_ref(vm));
}

static gboolean try_connect(gpointer data)
{
  VmletVm *vm = data;
  vm->connect_retry = 0;
  vmlet_qmp_connect_async(vm->rec->qmp_socket, vm->cancel, on_qmp_connected, g_object_ref(vm));
  return G_SOURCE_REMOVE;
}

/* Watches QEMU's exit through its pidfd. */
static void watch_process(VmletVm *vm, int pidfd)
{
  vm->pidfd = pidfd;
  vm->pidfd_watch = g_unix_fd_add(pidfd, G_IO_IN, on_pidfd, vm);
  vm->cancel = g_cancellable_new();
}

static void connect_qmp(VmletVm *vm)
{
  vm->connect_deadline_us = g_get_monotonic_time() + QMP_CONNECT_TIMEOUT_MS * 1000;
  try_connect(vm);
}

/* QEMU is in its cgroup (or could not be put there): let it exec, or make it exit. */
static void on_placed(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletVm) vm = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *location = vmlet_cgroups_place_finish(vm->env->cgroups, res, &error);
  if (vm->gate < 0 || !qemu_alive(vm)) {
    /* QEMU is gone already (stopped, deleted): an empty group is left to remove. */
    if (location)
      vmlet_cgroups_remove(vm->env->cgroups, location);
    return;
  }
  if (!location) {
    g_free(vm->place_error);
    vm->place_error = g_strdup_printf("placing QEMU in its cgroup failed: %s", error->message);
    vmlet_proc_release(vm->gate, FALSE);
    vm->gate = -1;
    return; /* it exits at the gate; its exit schedules a retry */
  }
  g_free(vm->rec->cgroup);
  vm->rec->cgroup = g_steal_pointer(&location);
  save(vm);
  vmlet_proc_release(vm->gate, TRUE);
  vm->gate = -1;
  connect_qmp(vm);
}

/* ---- starting ---- */

/* UserDataRef / SysprepRef: the Secret's type and keys are checked here, at start, so a
 * Secret that appears or is fixed later lets the Pending VM start. Errors name the Secret
 * and the key, never a value. */
static gboolean build_from_secret(VmletVm *vm, const VmPlanDisk *disk, GError **error)
{
  g_free(vm->rec->provisioning_digest);
  vm->rec->provisioning_digest = secret_digest(vm);
  const VmSpec *spec = vm->spec;
  gboolean sysprep = spec->provisioning == VM_PROVISIONING_SYSPREP_REF;
  const char *field = sysprep ? "spec.provisioning.sysprepRef" : "spec.provisioning.userDataRef";
  g_autofree char *why = NULL;
  VmletSecret *secret = vmlet_inventory_secret(vm->env->inv, spec->meta.namespace,
                                               spec->provisioning_secret, &why);
  if (!secret) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "%s: %s", field, why);
    return FALSE;
  }
  const char *want = sysprep ? VMLET_SECRET_TYPE_SYSPREP : VMLET_SECRET_TYPE_CLOUD_INIT;
  if (g_strcmp0(secret->type, want) != 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: Secret \"%s\" has type \"%s\", expected \"%s\"", field,
                spec->provisioning_secret, secret->type, want);
    return FALSE;
  }
  if (!sysprep) {
    GBytes *ud = g_hash_table_lookup(secret->data, "userData");
    if (!ud) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: Secret \"%s\" has no key \"userData\"", field,
                  spec->provisioning_secret);
      return FALSE;
    }
    gsize len = 0;
    const char *data = g_bytes_get_data(ud, &len);
    return vmlet_nocloud_write(disk->path, spec->meta.namespace, spec->meta.name, data, len,
                               NULL, error);
  }
  g_autoptr(GPtrArray) names = g_ptr_array_new();
  g_autoptr(GPtrArray) blobs = g_ptr_array_new();
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, secret->data);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    g_ptr_array_add(names, k);
    g_ptr_array_add(blobs, v);
  }
  if (!vmlet_sysprep_write(disk->path, names, blobs, error)) {
    g_prefix_error(error, "%s: Secret \"%s\": ", field, spec->provisioning_secret);
    return FALSE;
  }
  return TRUE;
}

/* The provisioning CD-ROM, built in process for every start (so a changed userData is
 * what the guest sees after a restart), mode 0600 in the VM's run dir. */
static gboolean build_provisioning(VmletVm *vm, const VmPlanDisk *disk, GError **error)
{
  const VmSpec *spec = vm->spec;
  switch (spec->provisioning) {
  case VM_PROVISIONING_USER_DATA:
    return vmlet_nocloud_write(disk->path, spec->meta.namespace, spec->meta.name,
                               spec->user_data, strlen(spec->user_data), NULL, error);
  case VM_PROVISIONING_USER_DATA_REF:
  case VM_PROVISIONING_SYSPREP_REF:
    return build_from_secret(vm, disk, error);
  case VM_PROVISIONING_NONE:
    break;
  }
  return TRUE;
}

static gboolean prepare_files(VmletVm *vm, VmPlan *plan, int *log_fd, GError **error)
{
  if (g_mkdir_with_parents(plan->runtime_dir, 0700) < 0 || chmod(plan->runtime_dir, 0700) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", plan->runtime_dir,
                g_strerror(errno));
    return FALSE;
  }
  for (guint i = 0; i < plan->disks->len; i++) {
    const VmPlanDisk *d = plan->disks->pdata[i];
    if (!d->is_ref) {
      if (!build_provisioning(vm, d, error))
        return FALSE;
      continue;
    }
    if (!g_file_test(d->path, G_FILE_TEST_EXISTS)) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
                  "%s \"%s\": %s does not exist", vm_block_kind_name(d->kind), d->name, d->path);
      return FALSE;
    }
  }
  if (plan->ovmf_vars && !g_file_test(plan->ovmf_vars, G_FILE_TEST_EXISTS)) {
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autofree char *dir = g_path_get_dirname(plan->ovmf_vars);
    if (g_mkdir_with_parents(dir, 0700) < 0 ||
        !g_file_get_contents(plan->ovmf_vars_template, &data, &len, error) ||
        !vmlet_write_file_atomic(plan->ovmf_vars, data, len, 0600, error))
      return FALSE;
  }
  g_autofree char *log = g_build_filename(plan->runtime_dir, "qemu.log", NULL);
  *log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (*log_fd < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", log, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

/* QEMU's confinement, prepared once (the user may be created after vmletd started, so a
 * failure is not kept). */
static VmletConfine *confinement(VmletVm *vm, GError **error)
{
  if (!vm->env->confine)
    vm->env->confine = vmlet_confine_new(vm->env->node->qemu_user, error);
  return vm->env->confine;
}

static void start(VmletVm *vm)
{
  g_autoptr(VmletDiag) d = vmlet_diag_new(vm->source);
  g_autoptr(VmPlan) plan = vm_plan_build(vm->spec, vm->env->inv, vm->env->node, d);
  g_autoptr(GError) error = NULL;
  g_autofree char *mismatch = NULL;
  if (!plan)
    vmlet_diag_check(d, &error);
  else if (!vm_spec_matches_node(vm->spec, vm->env->node->labels, &mismatch))
    g_set_error(&error, VMLET_ERROR, VMLET_ERROR_INVALID, "this node does not match: %s",
                mismatch);
  else if (!vm->env->cgroups)
    g_set_error(&error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s", vm->env->cgroups_problem);
  vmlet_autofd log_fd = -1;
  VmletProcId id;
  int gate = -1;
  /* The attachments come back with the VM: in its argv, outside the boot order. */
  if (!error)
    vmlet_attach_ctl_plan(vm->hot, plan);
  VmletConfine *confine = error ? NULL : confinement(vm, &error);
  vmlet_attach_ctl_set_confine(vm->hot, confine);
  if (confine && prepare_files(vm, plan, &log_fd, &error) &&
      vmlet_qemu_access_grant(plan, confine, &error)) {
    g_auto(GStrv) argv = vm_qemu_argv(plan);
    VmletSpawnOptions opts = {.confine = confine, .gated = TRUE};
    vm->spawn_mono_us = g_get_monotonic_time();
    vmlet_proc_spawn((const char *const *)argv, log_fd, &opts, &id, &gate, &error);
  }
  if (error) {
    set_str(&vm->problem, error->message);
    complete_ops(vm, VM_OP_START, OP_FAILED, error->message);
    complete_ops(vm, VM_OP_RESTART, OP_FAILED, error->message);
    set_phase(vm, VM_PHASE_PENDING);
    changed(vm);
    return;
  }
  g_clear_pointer(&vm->problem, g_free);
  g_clear_pointer(&vm->resources_error, g_free);
  VmResources res;
  vm_resources_compute(vm->spec, plan->accel, vm->env->node->cpu_limit, &res);
  vm->plan = g_steal_pointer(&plan);
  vm->rec->proc = id;
  set_str(&vm->rec->qmp_socket, vm->plan->qmp_socket);
  set_str(&vm->rec->runtime_dir, vm->plan->runtime_dir);
  if (vm->rec->started_spec)
    json_node_unref(vm->rec->started_spec);
  vm->rec->started_spec = json_node_copy(vm->spec->spec_json);
  vm->is_child = TRUE;
  vmlet_attach_ctl_started(vm->hot, vm->plan);
  set_phase(vm, VM_PHASE_STARTING);
  int pidfd = vmlet_proc_open(&id, &error);
  if (pidfd < 0) {
    vmlet_proc_release(gate, FALSE);
    g_free(vm->last_exit);
    vm->last_exit = g_strdup_printf("QEMU exited at start; see %s/qemu.log", vm->plan->runtime_dir);
    waitpid(id.pid, NULL, WNOHANG);
    vm->rec->proc.pid = 0;
    vmlet_attach_ctl_deactivate(vm->hot);
    set_phase(vm, VM_PHASE_STOPPED);
    schedule_restart(vm);
    return;
  }
  watch_process(vm, pidfd);
  /* Into its cgroup while it waits before exec; on_placed lets it run. */
  vm->gate = gate;
  vmlet_cgroups_place_async(vm->env->cgroups, vm->namespace, vm->name, id.pid, &res,
                            vm->cancel, on_placed, g_object_ref(vm));
}

/* ---- public ---- */

void vmlet_vm_set_spec(VmletVm *vm, VmSpec *spec, const char *source, const char *problem)
{
  gboolean first = vm->spec == NULL && vm->source == NULL;
  g_clear_pointer(&vm->spec, vm_spec_unref);
  vm->spec = spec ? vm_spec_ref(spec) : NULL;
  set_str(&vm->source, source);
  set_str(&vm->problem, problem);
  /* Manual VMs start stopped: only a Start operation runs them. */
  if (first && spec && spec->run_policy == VM_RUN_POLICY_MANUAL && vm->rec->proc.pid == 0 &&
      g_str_equal(vm->rec->phase, "Pending"))
    vm->rec->stopped_manually = TRUE;
  sync_attachments(vm);
  changed(vm);
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

gboolean vmlet_vm_pause(VmletVm *vm, gboolean pause, GError **error)
{
  if (vm->phase != VM_PHASE_RUNNING || !vm->qmp || vmlet_qmp_is_closed(vm->qmp)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: cannot be %s: it is %s",
                vm->name, pause ? "paused" : "unpaused", phase_names[vm->phase]);
    return FALSE;
  }
  /* The STOP / RESUME event updates the status; a repeated request is harmless. */
  vmlet_qmp_execute_async(vm->qmp, pause ? "stop" : "cont", NULL, vm->cancel, on_qmp_done,
                          NULL);
  return TRUE;
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
  changed(vm);
}

void vmlet_vm_adopt(VmletVm *vm, VmletVmRecord *record)
{
  vmlet_vm_record_free(vm->rec);
  vm->rec = record;
  /* A damaged entry is dropped: once QMP is up, the probe still finds the device of any
   * attachment that wants it (attachctl.c), so nothing is plugged twice. */
  vmlet_attach_ctl_load(vm->hot, record->hotplugged, NULL);
  for (guint i = 0; i < G_N_ELEMENTS(phase_names); i++)
    if (g_str_equal(record->phase, phase_names[i]))
      vm->phase = (VmPhase)i;
  if (record->proc.pid == 0) {
    if (vm->phase != VM_PHASE_PENDING)
      vm->phase = VM_PHASE_STOPPED;
    vmlet_attach_ctl_deactivate(vm->hot);
    sync_attachments(vm);
    return;
  }
  g_autoptr(GError) error = NULL;
  int pidfd = vmlet_proc_open(&record->proc, &error);
  if (pidfd < 0) {
    set_str(&vm->last_exit, "QEMU exited while vmletd was not running");
    record->proc.pid = 0;
    vm->phase = VM_PHASE_STOPPED;
    vmlet_attach_ctl_deactivate(vm->hot);
    sync_attachments(vm);
    vmlet_vm_record_transition(record, "Stopped", g_get_real_time());
    save(vm);
    return;
  }
  vm->is_child = FALSE;
  sync_attachments(vm);
  /* Disks attached from now on are given to QEMU's user like those it started with. */
  vmlet_attach_ctl_set_confine(vm->hot, confinement(vm, NULL));
  watch_process(vm, pidfd);
  connect_qmp(vm);
}

void vmlet_vm_reconcile(VmletVm *vm)
{
  if (vm->deleting || vm->backoff_timer)
    return;
  gboolean want = want_running(vm);
  switch (vm->phase) {
  case VM_PHASE_PENDING:
  case VM_PHASE_STOPPED:
    if (want && !qemu_alive(vm))
      start(vm);
    else if (!vm->spec && vm->phase != VM_PHASE_PENDING)
      set_phase(vm, VM_PHASE_PENDING);
    else if (vm->spec && !want && vm->phase == VM_PHASE_PENDING && !vm->problem)
      set_phase(vm, VM_PHASE_STOPPED);
    break;
  case VM_PHASE_RUNNING:
    apply_core_fraction(vm);
    if (!want && vm->spec) {
      begin_stop(vm, FALSE);
    } else if (vm->spec && vm->spec->restart_approval == VM_RESTART_APPROVAL_AUTOMATIC) {
      /* restartApprovalMode Automatic: apply pending changes with a graceful restart. */
      g_autoptr(JsonArray) changes = pending_changes(vm);
      if (json_array_get_length(changes) > 0) {
        vm->restart_after_stop = TRUE;
        begin_stop(vm, FALSE);
      }
    }
    break;
  case VM_PHASE_STARTING:
  case VM_PHASE_STOPPING:
  case VM_PHASE_TERMINATING:
    break;
  }
}

/* Why the run policy or the VM's state refuses an operation, or NULL when it may go ahead. */
static char *refusal(VmletVm *vm, VmOpType type)
{
  if (!vm->spec)
    return g_strdup_printf("%s: cannot be operated: %s", vm->name,
                           vm->problem ? vm->problem : "no valid spec");
  VmRunPolicy policy = vm->spec->run_policy;
  if (type != VM_OP_STOP && policy == VM_RUN_POLICY_ALWAYS_OFF)
    return g_strdup_printf("%s: runPolicy AlwaysOff does not allow starting the VM", vm->name);
  if (type == VM_OP_STOP && policy == VM_RUN_POLICY_ALWAYS_ON)
    return g_strdup_printf("%s: runPolicy AlwaysOn keeps the VM running; change runPolicy to "
                           "stop it", vm->name);
  if (vm->deleting)
    return g_strdup_printf("%s: is being deleted", vm->name);
  return NULL;
}

char *vmlet_vm_operate(VmletVm *vm, VmOpType type, gboolean force)
{
  VmOp *op = g_new0(VmOp, 1);
  g_autofree char *uuid = g_uuid_string_random();
  op->uid = g_strndup(uuid, 8);
  op->type = type;
  op->force = force;
  op->phase = OP_IN_PROGRESS;
  op->created_us = g_get_real_time();
  while (vm->ops->len >= MAX_OPERATIONS)
    g_ptr_array_remove_index(vm->ops, 0);
  g_ptr_array_add(vm->ops, op);
  char *uid = g_strdup(op->uid);

  /* A refused operation still exists, Failed with the reason, as DVP shows a
   * VirtualMachineOperation it cannot carry out; nothing else changes. */
  op->reason = refusal(vm, type);
  if (op->reason) {
    op->phase = OP_FAILED;
    changed(vm);
    return uid;
  }
  VmRunPolicy policy = vm->spec->run_policy;

  /* An operation is the user's word: it ends any crash-loop wait. */
  g_clear_handle_id(&vm->backoff_timer, g_source_remove);
  vm->backoff_s = BACKOFF_MIN_S;
  switch (type) {
  case VM_OP_START:
    vm->rec->stopped_manually = FALSE;
    save(vm);
    if (vm->phase == VM_PHASE_RUNNING)
      complete_ops(vm, VM_OP_START, OP_COMPLETED, "already running");
    vmlet_vm_reconcile(vm);
    break;
  case VM_OP_STOP:
    if (policy != VM_RUN_POLICY_ALWAYS_ON)
      vm->rec->stopped_manually = TRUE;
    save(vm);
    if (!qemu_alive(vm)) {
      complete_ops(vm, VM_OP_STOP, OP_COMPLETED, "already stopped");
      set_phase(vm, vm->phase == VM_PHASE_PENDING ? VM_PHASE_PENDING : VM_PHASE_STOPPED);
    } else {
      begin_stop(vm, force);
    }
    break;
  case VM_OP_RESTART:
    vm->rec->stopped_manually = FALSE;
    save(vm);
    if (qemu_alive(vm)) {
      vm->restart_after_stop = TRUE;
      begin_stop(vm, force);
    } else {
      vmlet_vm_reconcile(vm);
    }
    break;
  }
  changed(vm);
  return uid;
}

void vmlet_vm_delete(VmletVm *vm)
{
  if (vm->deleting)
    return;
  vm->deleting = TRUE;
  g_clear_handle_id(&vm->backoff_timer, g_source_remove);
  set_phase(vm, VM_PHASE_TERMINATING);
  sync_attachments(vm);
  if (qemu_alive(vm)) {
    begin_stop(vm, FALSE);
    return;
  }
  g_autoptr(GError) error = NULL;
  g_clear_handle_id(&vm->hot_save, g_source_remove);
  remove_runtime_dir(vm);
  vmlet_vm_record_delete(vm->env->node->state_dir, vm->namespace, vm->name, &error);
  g_signal_emit(vm, signals[SIGNAL_GONE], 0);
}

/* ---- DVP-shaped output ---- */

static void add_condition(JsonArray *conds, const char *type, gboolean ok, const char *reason,
                          const char *message)
{
  JsonObject *c = json_object_new();
  json_object_set_string_member(c, "type", type);
  json_object_set_string_member(c, "status", ok ? "True" : "False");
  if (reason)
    json_object_set_string_member(c, "reason", reason);
  if (message)
    json_object_set_string_member(c, "message", message);
  json_array_add_object_element(conds, c);
}

static char *iso8601(gint64 wall_us)
{
  g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(wall_us / G_USEC_PER_SEC);
  return g_date_time_format_iso8601(dt);
}

/* status.blockDeviceRefs as DVP shows it: the spec's devices in boot order, then the
 * hot-plugged ones with their attachment. */
static JsonArray *block_device_refs(VmletVm *vm)
{
  JsonArray *arr = json_array_new();
  gboolean running = vm->phase == VM_PHASE_RUNNING && qemu_alive(vm);
  for (guint i = 0; vm->spec && i < vm->spec->block_devices->len; i++) {
    const VmBlockDeviceRef *ref = vm->spec->block_devices->pdata[i];
    JsonObject *o = json_object_new();
    g_autofree char *target = vm_plan_device_id(ref->kind, ref->name);
    json_object_set_string_member(o, "kind", vm_block_kind_name(ref->kind));
    json_object_set_string_member(o, "name", ref->name);
    json_object_set_string_member(o, "target", target);
    json_object_set_boolean_member(o, "attached", running);
    json_object_set_boolean_member(o, "hotplugged", FALSE);
    json_array_add_object_element(arr, o);
  }
  vmlet_attach_ctl_block_refs(vm->hot, arr);
  return arr;
}

JsonNode *vmlet_vm_to_json(VmletVm *vm)
{
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "apiVersion", "virtualization.deckhouse.io/v1alpha2");
  json_object_set_string_member(root, "kind", "VirtualMachine");
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", vm->name);
  json_object_set_string_member(md, "namespace", vm->namespace);
  g_autofree char *created = iso8601(vm->rec->created_us);
  json_object_set_string_member(md, "creationTimestamp", created);
  if (vm->spec) {
    JsonObject *labels = json_object_new(), *ann = json_object_new();
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, vm->spec->meta.labels);
    while (g_hash_table_iter_next(&it, &k, &v))
      json_object_set_string_member(labels, k, v);
    g_hash_table_iter_init(&it, vm->spec->meta.annotations);
    while (g_hash_table_iter_next(&it, &k, &v))
      json_object_set_string_member(ann, k, v);
    json_object_set_object_member(md, "labels", labels);
    json_object_set_object_member(md, "annotations", ann);
    if (vm->spec->meta.uid)
      json_object_set_string_member(md, "uid", vm->spec->meta.uid);
  }
  json_object_set_object_member(root, "metadata", md);
  if (vm->spec)
    json_object_set_member(root, "spec", json_node_copy(vm->spec->spec_json));

  JsonObject *st = json_object_new();
  json_object_set_string_member(st, "phase", phase_names[vm->phase]);
  if (qemu_alive(vm) || vm->phase == VM_PHASE_RUNNING)
    json_object_set_string_member(st, "nodeName", vm->env->node->name);
  JsonArray *conds = json_array_new();
  if (vm->problem)
    add_condition(conds, "Ready", FALSE, vm->spec ? "DependencyNotReady" : "InvalidSpec",
                  vm->problem);
  else
    add_condition(conds, "Ready", TRUE, NULL, NULL);
  if (vm->backoff_timer)
    add_condition(conds, "Running", FALSE, "CrashLoopBackOff", vm->last_exit);
  else if (vm->last_exit && vm->phase != VM_PHASE_RUNNING)
    add_condition(conds, "Running", FALSE, "Stopped", vm->last_exit);
  else
    add_condition(conds, "Running", vm->phase == VM_PHASE_RUNNING, NULL, NULL);
  if (vm->save_error)
    add_condition(conds, "StatePersisted", FALSE, "WriteFailed", vm->save_error);
  if (vm->resources_error)
    add_condition(conds, "ResourcesApplied", FALSE, "CgroupUpdateFailed", vm->resources_error);
  add_condition(conds, "AgentReady", FALSE, "NotImplemented",
                "the guest agent channel is not read yet");
  if (vm->paused && qemu_alive(vm))
    add_condition(conds, "Paused", TRUE, "PausedByUser",
                  "the VM's vCPUs are stopped (vmlet unpause resumes them)");
  JsonArray *changes = pending_changes(vm);
  gboolean awaiting = json_array_get_length(changes) > 0;
  add_condition(conds, "AwaitingRestartToApplyConfiguration", awaiting,
                awaiting ? "RestartAwaitingChangesExist" : NULL,
                awaiting ? "the VM must be restarted to apply the changes listed in "
                           "status.restartAwaitingChanges"
                         : NULL);
  json_object_set_array_member(st, "conditions", conds);
  JsonObject *stats = json_object_new();
  json_object_set_member(stats, "phasesTransitions", json_node_copy(vm->rec->transitions));
  if (vm->rec->launch_us) {
    JsonObject *ltd = json_object_new();
    g_autofree char *dur = g_strdup_printf("%.3fs", vm->rec->launch_us / 1e6);
    json_object_set_string_member(ltd, "waitingForDependencies", "0s");
    json_object_set_string_member(ltd, "virtualMachineStarting", dur);
    json_object_set_object_member(stats, "launchTimeDuration", ltd);
  }
  json_object_set_object_member(st, "stats", stats);
  json_object_set_int_member(st, "restarts", vm->rec->restarts);
  if (vm->rec->proc.pid)
    json_object_set_int_member(st, "pid", vm->rec->proc.pid);
  json_object_set_array_member(st, "restartAwaitingChanges", changes);
  JsonNode *resources = resources_json(vm);
  if (resources)
    json_object_set_member(st, "resources", resources);
  if (vm->rec->cgroup && vm->env->cgroups) {
    g_autofree char *where = vmlet_cgroups_describe(vm->env->cgroups, vm->rec->cgroup);
    json_object_set_string_member(st, "cgroup", where);
  }
  json_object_set_array_member(st, "blockDeviceRefs", block_device_refs(vm));
  /* What kubectl shows as "Warning:" lines at apply time, kept on the object so that a
   * drop-in written by hand shows them too (vmlet's addition to DVP's status). */
  if (vm->warnings) {
    JsonArray *w = json_array_new();
    for (guint i = 0; vm->warnings[i]; i++)
      json_array_add_string_element(w, vm->warnings[i]);
    json_object_set_array_member(st, "warnings", w);
  }
  json_object_set_object_member(root, "status", st);
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, root);
  return node;
}

JsonNode *vmlet_vm_operations_json(VmletVm *vm)
{
  JsonArray *arr = json_array_new();
  for (guint i = 0; i < vm->ops->len; i++) {
    VmOp *op = vm->ops->pdata[i];
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "apiVersion", "virtualization.deckhouse.io/v1alpha2");
    json_object_set_string_member(o, "kind", "VirtualMachineOperation");
    JsonObject *md = json_object_new();
    g_autofree char *type = g_ascii_strdown(op_type_names[op->type], -1);
    g_autofree char *name = g_strdup_printf("%s-%s-%s", type, vm->name, op->uid);
    json_object_set_string_member(md, "name", name);
    json_object_set_string_member(md, "namespace", vm->namespace);
    g_autofree char *created = iso8601(op->created_us);
    json_object_set_string_member(md, "creationTimestamp", created);
    json_object_set_object_member(o, "metadata", md);
    JsonObject *spec = json_object_new();
    json_object_set_string_member(spec, "virtualMachineName", vm->name);
    json_object_set_string_member(spec, "type", op_type_names[op->type]);
    json_object_set_boolean_member(spec, "force", op->force);
    json_object_set_object_member(o, "spec", spec);
    JsonObject *st = json_object_new();
    json_object_set_string_member(st, "phase", op_phase_names[op->phase]);
    if (op->reason)
      json_object_set_string_member(st, "reason", op->reason);
    json_object_set_object_member(o, "status", st);
    json_array_add_object_element(arr, o);
  }
  JsonNode *node = json_node_new(JSON_NODE_ARRAY);
  json_node_take_array(node, arr);
  return node;
}
