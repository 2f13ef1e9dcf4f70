#include "instance.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>

#include "vmlet-error.h"

/* Polled, not watched: a fresh QEMU's socket appears tens of ms after exec, and a start is
 * Running that much sooner the finer the poll (tests/bench/bench_daemon.py). 2 ms for the
 * first second, then 20 ms so a slow host is not flooded with connects. */
#define CONNECT_RETRY_FAST_MS 2
#define CONNECT_RETRY_MS 20
#define CONNECT_FAST_S 1
/* A dying QEMU's QMP socket closes a moment before its pidfd says it exited: the exit, with
 * its real status, gets this long to be seen before a hang-up counts as one of its own. */
#define MONITOR_LOST_GRACE_MS 1000

struct _VmletInstance {
  GObject parent;
  VmletProcId id;
  int pidfd;
  guint pidfd_watch;
  int gate;            /* holds QEMU before exec until it is in its cgroup; -1 once let go */
  gboolean is_child;   /* spawned by this vmletd (reapable) rather than adopted */
  gboolean exited;
  VmletCgroups *cgroups;
  char *cgroup;        /* where it was placed */
  char *place_error;   /* why it was let go at the gate to exit */
  char *qmp_socket;
  VmletMonitor *mon;
  char *monitor_error; /* why QMP never answered, or why it went away */
  gulong closed_id;
  char *lost_error;    /* the monitor closed while QEMU runs: why */
  guint lost_timer;
  GCancellable *cancel; /* the placement, the connect and the caller's commands */
  gint64 connect_deadline_us;
  guint connect_retry;
  guint kill_timer;
};

enum { SIGNAL_PLACED, SIGNAL_READY, SIGNAL_EXITED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletInstance, vmlet_instance, G_TYPE_OBJECT)

static void release_everything(VmletInstance *inst)
{
  /* A QEMU still held at its gate is let go to exit, never to run. */
  vmlet_proc_release(inst->gate, FALSE);
  inst->gate = -1;
  g_clear_handle_id(&inst->pidfd_watch, g_source_remove);
  g_clear_handle_id(&inst->connect_retry, g_source_remove);
  g_clear_handle_id(&inst->kill_timer, g_source_remove);
  g_clear_handle_id(&inst->lost_timer, g_source_remove);
  g_cancellable_cancel(inst->cancel);
  if (inst->mon) {
    g_clear_signal_handler(&inst->closed_id, inst->mon);
    vmlet_monitor_close(inst->mon);
    g_clear_object(&inst->mon);
  }
  if (inst->pidfd >= 0) {
    close(inst->pidfd);
    inst->pidfd = -1;
  }
}

static void vmlet_instance_finalize(GObject *obj)
{
  VmletInstance *inst = VMLET_INSTANCE(obj);
  release_everything(inst);
  g_clear_object(&inst->cancel);
  g_free(inst->cgroup);
  g_free(inst->place_error);
  g_free(inst->qmp_socket);
  g_free(inst->monitor_error);
  g_free(inst->lost_error);
  G_OBJECT_CLASS(vmlet_instance_parent_class)->finalize(obj);
}

static void vmlet_instance_class_init(VmletInstanceClass *klass)
{
  G_OBJECT_CLASS(klass)->finalize = vmlet_instance_finalize;
  GType t = VMLET_TYPE_INSTANCE;
  signals[SIGNAL_PLACED] = g_signal_new("placed", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                        G_TYPE_NONE, 1, G_TYPE_STRING);
  signals[SIGNAL_READY] = g_signal_new("ready", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                       G_TYPE_NONE, 0);
  signals[SIGNAL_EXITED] = g_signal_new("exited", t, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                        G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_STRING);
}

static void vmlet_instance_init(VmletInstance *inst)
{
  inst->pidfd = -1;
  inst->gate = -1;
  inst->cancel = g_cancellable_new();
}

const VmletProcId *vmlet_instance_get_id(VmletInstance *inst)
{
  return &inst->id;
}

VmletMonitor *vmlet_instance_get_monitor(VmletInstance *inst)
{
  return inst->mon;
}

const char *vmlet_instance_get_cgroup(VmletInstance *inst)
{
  return inst->cgroup;
}

GCancellable *vmlet_instance_get_cancellable(VmletInstance *inst)
{
  return inst->cancel;
}

gboolean vmlet_instance_is_child(VmletInstance *inst)
{
  return inst->is_child;
}

gboolean vmlet_instance_has_exited(VmletInstance *inst)
{
  return inst->exited;
}

/* ---- the end ---- */

static char *describe_status(int status)
{
  if (WIFEXITED(status))
    return g_strdup_printf("exit status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return g_strdup_printf("killed by signal %d (%s)", WTERMSIG(status),
                           g_strsignal(WTERMSIG(status)));
  return g_strdup("unknown status");
}

static gboolean on_pidfd(gint fd, GIOCondition cond, gpointer data)
{
  g_autoptr(VmletInstance) inst = g_object_ref(data);
  inst->pidfd_watch = 0;
  int status = 0;
  gboolean reaped = inst->is_child && vmlet_proc_reap(inst->pidfd, &status);
  release_everything(inst);
  inst->exited = TRUE;
  if (inst->cgroup && inst->cgroups)
    vmlet_cgroups_remove(inst->cgroups, inst->cgroup);
  VmletExitCause cause;
  g_autofree char *how = NULL;
  /* A QEMU that never got past its gate exited because it could not be placed. */
  if (inst->place_error) {
    cause = VMLET_EXIT_NOT_PLACED;
    how = g_strdup(inst->place_error);
  } else if (inst->monitor_error) {
    cause = VMLET_EXIT_NO_MONITOR;
    how = g_strdup(inst->monitor_error);
  } else if (reaped) {
    cause = VMLET_EXIT_STATUS;
    how = describe_status(status);
  } else {
    cause = VMLET_EXIT_UNKNOWN;
    how = g_strdup("exit status unknown: QEMU was adopted");
  }
  g_signal_emit(inst, signals[SIGNAL_EXITED], 0, (gint)cause, how);
  return G_SOURCE_REMOVE;
}

static gboolean on_kill_timeout(gpointer data)
{
  VmletInstance *inst = data;
  inst->kill_timer = 0;
  if (!inst->exited)
    kill(inst->id.pid, SIGKILL);
  return G_SOURCE_REMOVE;
}

static void on_quit_sent(GObject *src, GAsyncResult *res, gpointer data)
{
  /* QEMU answers quit and then exits, or closes the connection first: its exit is what
   * counts, and the kill timer covers a QEMU that does neither. */
  vmlet_monitor_finish(VMLET_MONITOR(src), res, NULL);
}

void vmlet_instance_quit(VmletInstance *inst)
{
  if (inst->exited || inst->kill_timer)
    return;
  /* quit lets QEMU flush and close its images cleanly; SIGKILL if it does not. */
  if (inst->mon && !vmlet_monitor_is_closed(inst->mon))
    vmlet_monitor_quit(inst->mon, inst->cancel, on_quit_sent, NULL);
  else
    kill(inst->id.pid, SIGTERM);
  inst->kill_timer = g_timeout_add_seconds(VMLET_QUIT_TIMEOUT_S, on_kill_timeout, inst);
}

/* ---- the monitor ---- */

static gboolean try_connect(gpointer data);

static gboolean on_monitor_lost(gpointer data)
{
  VmletInstance *inst = data;
  inst->lost_timer = 0;
  if (inst->exited || inst->kill_timer)
    return G_SOURCE_REMOVE;
  inst->monitor_error = g_strdup_printf("QMP connection lost: %s; QEMU was stopped",
                                        inst->lost_error);
  vmlet_instance_quit(inst);
  return G_SOURCE_REMOVE;
}

/* QEMU hung up on QMP (or sent what made vmlet drop the connection) and has not exited: it
 * can no longer be controlled (no power button, no hotplug) nor watched (a guest power-off
 * would go unseen and the VM stay Running for ever). Like libvirt on monitor EOF, vmlet
 * stops it; its exit is then a crash. A stop already under way needs nothing more. */
static void on_monitor_closed(VmletMonitor *mon, const GError *error, VmletInstance *inst)
{
  if (inst->exited || inst->kill_timer || inst->lost_timer)
    return;
  g_free(inst->lost_error);
  inst->lost_error = g_strdup(error->message);
  inst->lost_timer = g_timeout_add(MONITOR_LOST_GRACE_MS, on_monitor_lost, inst);
}

static void on_connected(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletInstance) inst = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletMonitor) mon = vmlet_monitor_connect_finish(res, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || inst->exited)
    return;
  if (!mon) {
    gint64 now = g_get_monotonic_time();
    if (now < inst->connect_deadline_us) {
      gint64 waited_us =
          now - (inst->connect_deadline_us - (gint64)VMLET_QMP_CONNECT_TIMEOUT_MS * 1000);
      guint ms = waited_us < CONNECT_FAST_S * G_USEC_PER_SEC ? CONNECT_RETRY_FAST_MS
                                                            : CONNECT_RETRY_MS;
      inst->connect_retry = g_timeout_add(ms, try_connect, inst);
      return;
    }
    inst->monitor_error = g_strdup_printf("no QMP connection: %s", error->message);
    vmlet_instance_quit(inst);
    return;
  }
  inst->mon = g_steal_pointer(&mon);
  inst->closed_id = g_signal_connect(inst->mon, "closed", G_CALLBACK(on_monitor_closed), inst);
  g_signal_emit(inst, signals[SIGNAL_READY], 0);
}

static gboolean try_connect(gpointer data)
{
  VmletInstance *inst = data;
  inst->connect_retry = 0;
  vmlet_monitor_connect_async(inst->qmp_socket, inst->cancel, on_connected,
                              g_object_ref(inst));
  return G_SOURCE_REMOVE;
}

static void connect_monitor(VmletInstance *inst)
{
  inst->connect_deadline_us = g_get_monotonic_time() + VMLET_QMP_CONNECT_TIMEOUT_MS * 1000;
  try_connect(inst);
}

/* ---- the beginning ---- */

static void watch(VmletInstance *inst, int pidfd)
{
  inst->pidfd = pidfd;
  inst->pidfd_watch = g_unix_fd_add(pidfd, G_IO_IN, on_pidfd, inst);
}

/* QEMU is in its cgroup (or could not be put there): let it exec, or make it exit. */
static void on_placed(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(VmletInstance) inst = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *location = vmlet_cgroups_place_finish(inst->cgroups, res, &error);
  if (inst->gate < 0 || inst->exited) {
    /* QEMU is gone already (stopped, deleted): an empty group is left to remove. */
    if (location)
      vmlet_cgroups_remove(inst->cgroups, location);
    return;
  }
  if (!location) {
    inst->place_error = g_strdup_printf("placing QEMU in its cgroup failed: %s",
                                        error->message);
    vmlet_proc_release(inst->gate, FALSE);
    inst->gate = -1;
    return; /* it exits at the gate */
  }
  inst->cgroup = g_steal_pointer(&location);
  g_signal_emit(inst, signals[SIGNAL_PLACED], 0, inst->cgroup);
  if (inst->exited || inst->gate < 0)
    return; /* a "placed" handler stopped it */
  vmlet_proc_release(inst->gate, TRUE);
  inst->gate = -1;
  connect_monitor(inst);
}

VmletInstance *vmlet_instance_spawn(const VmletInstanceSpawn *how, GError **error)
{
  VmletSpawnOptions opts = {.confine = how->confine, .gated = TRUE};
  VmletProcId id;
  int gate = -1;
  if (!vmlet_proc_spawn(how->argv, how->log_fd, &opts, &id, &gate, error))
    return NULL;
  g_autoptr(GError) local = NULL;
  int pidfd = vmlet_proc_open(&id, &local);
  if (pidfd < 0) {
    vmlet_proc_release(gate, FALSE);
    waitpid(id.pid, NULL, WNOHANG);
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "QEMU exited at start (%s)",
                local->message);
    return NULL;
  }
  VmletInstance *inst = g_object_new(VMLET_TYPE_INSTANCE, NULL);
  inst->id = id;
  inst->is_child = TRUE;
  inst->gate = gate;
  inst->cgroups = how->cgroups;
  inst->qmp_socket = g_strdup(how->qmp_socket);
  watch(inst, pidfd);
  /* Into its cgroup while it waits before exec; on_placed lets it run. */
  vmlet_cgroups_place_async(how->cgroups, how->namespace, how->name, id.pid, how->resources,
                            inst->cancel, on_placed, g_object_ref(inst));
  return inst;
}

VmletInstance *vmlet_instance_adopt(const VmletProcId *id, const char *qmp_socket,
                                    VmletCgroups *cgroups, const char *cgroup, GError **error)
{
  int pidfd = vmlet_proc_open(id, error);
  if (pidfd < 0)
    return NULL;
  VmletInstance *inst = g_object_new(VMLET_TYPE_INSTANCE, NULL);
  inst->id = *id;
  inst->cgroups = cgroups;
  inst->cgroup = g_strdup(cgroup);
  inst->qmp_socket = g_strdup(qmp_socket);
  watch(inst, pidfd);
  connect_monitor(inst);
  return inst;
}
