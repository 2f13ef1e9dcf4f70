/* A scratch node for the runtime tests (runtime-harness.h). */
#include "runtime-harness.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <glib/gstdio.h>

#include "node.h"

#define API "virtualization.deckhouse.io/v1alpha2"

typedef struct {
  RtNode *node;
  char *name;
  FakeQmp *fq;
  gboolean ignores_button;
  guint guest_timer; /* the guest's answer to the power button, on its way */
} RtVm;

struct _RtNode {
  char *root, *config_dir, *state_dir, *run_dir, *disk_dir;
  VmletManager *mgr;
  gulong changed_id;
  GHashTable *vms; /* name -> RtVm * */
  GArray *pids;    /* pid_t of every stand-in the node had */
};

static void rt_vm_free(gpointer p)
{
  RtVm *v = p;
  g_clear_handle_id(&v->guest_timer, g_source_remove);
  fake_qmp_free(v->fq);
  g_free(v->name);
  g_free(v);
}

/* ---- spinning ---- */

static gboolean on_tick(gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* The loop runs until pred holds or the deadline passes; a tick makes sure it wakes up to
 * look again even when nothing else happens. */
static gboolean spin_until(RtPredicate pred, gpointer data, guint ms)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)ms * 1000;
  guint tick = g_timeout_add(5, on_tick, NULL);
  gboolean ok;
  while (!(ok = pred(data)) && g_get_monotonic_time() < deadline)
    g_main_context_iteration(NULL, TRUE);
  g_source_remove(tick);
  return ok;
}

gboolean rt_spin_until(RtPredicate pred, gpointer data)
{
  return spin_until(pred, data, RT_DEADLINE_MS);
}

static gboolean never(gpointer data)
{
  return FALSE;
}

void rt_spin(guint ms)
{
  spin_until(never, NULL, ms);
}

/* ---- the node ---- */

static void must_mkdir(const char *path)
{
  if (g_mkdir_with_parents(path, 0700) < 0)
    g_error("%s: %s", path, g_strerror(errno));
}

RtNode *rt_node_new(void)
{
  RtNode *n = g_new0(RtNode, 1);
  g_autoptr(GError) error = NULL;
  /* Short: the VM's sockets must fit sun_path (plan.c). */
  n->root = g_dir_make_tmp("vmlet-rt-XXXXXX", &error);
  g_assert_no_error(error);
  n->config_dir = g_build_filename(n->root, "etc", NULL);
  n->state_dir = g_build_filename(n->root, "state", NULL);
  n->run_dir = g_build_filename(n->root, "run", NULL);
  n->disk_dir = g_build_filename(n->root, "disks", NULL);
  static const char *const dirs[] = {"vms.d", "disks.d", "images.d", "classes.d",
                                     "attachments.d"};
  for (gsize i = 0; i < G_N_ELEMENTS(dirs); i++) {
    g_autofree char *d = g_build_filename(n->config_dir, dirs[i], NULL);
    must_mkdir(d);
  }
  must_mkdir(n->disk_dir);
  n->vms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, rt_vm_free);
  n->pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
  return n;
}

static void set_str(char **slot, const char *value)
{
  g_free(*slot);
  *slot = g_strdup(value);
}

static VmletNode *make_node(RtNode *n)
{
  const char *fake = g_getenv("VMLET_FAKE_QEMU");
  const char *profiles = g_getenv("VMLET_PROFILES_DIR");
  if (!fake || !profiles)
    g_error("VMLET_FAKE_QEMU and VMLET_PROFILES_DIR must be set (tests/meson.build)");
  VmletNode *node = vmlet_node_new_default();
  set_str(&node->name, "rt-node");
  set_str(&node->run_dir, n->run_dir);
  set_str(&node->state_dir, n->state_dir);
  set_str(&node->disk_dir, n->disk_dir);
  g_autofree char *images = g_build_filename(n->root, "images", NULL);
  set_str(&node->image_dir, images);
  set_str(&node->config_dir, n->config_dir);
  set_str(&node->profiles_dir, profiles);
  set_str(&node->qemu_binary, fake);
  set_str(&node->qemu_user, "");
  node->accel = VMLET_ACCEL_TCG;
  node->cgroup_manager = VMLET_CGROUP_NONE;
  return node;
}

static void remember_pid(RtNode *n, pid_t pid)
{
  for (guint i = 0; i < n->pids->len; i++)
    if (g_array_index(n->pids, pid_t, i) == pid)
      return;
  g_array_append_val(n->pids, pid);
}

static pid_t pid_of(VmletVm *vm)
{
  g_autoptr(JsonNode) j = vmlet_vm_to_json(vm);
  JsonObject *st = json_object_get_object_member(json_node_get_object(j), "status");
  return json_object_has_member(st, "pid") ? (pid_t)json_object_get_int_member(st, "pid") : 0;
}

static void on_vm_changed(VmletManager *mgr, VmletVm *vm, RtNode *n)
{
  pid_t pid = pid_of(vm);
  if (pid)
    remember_pid(n, pid);
}

void rt_start(RtNode *n)
{
  g_assert_null(n->mgr);
  n->mgr = vmlet_manager_new(make_node(n));
  n->changed_id = g_signal_connect(n->mgr, "vm-changed", G_CALLBACK(on_vm_changed), n);
  vmlet_manager_start(n->mgr);
}

void rt_stop_manager(RtNode *n)
{
  if (!n->mgr)
    return;
  g_clear_signal_handler(&n->changed_id, n->mgr);
  /* vmletd's death, in process: nothing of the old vmletd may run again. A QMP reply still
   * on its way would otherwise reach a VM that a pending callback keeps alive, after the
   * manager it points into is gone (vmletd itself never outlives its manager). Disposed,
   * each VM lets go of its QEMU as a dying vmletd does: QMP closed, QEMU left running. */
  g_autoptr(GPtrArray) vms = vmlet_manager_list(n->mgr);
  for (guint i = 0; i < vms->len; i++)
    g_object_run_dispose(vms->pdata[i]);
  g_clear_object(&n->mgr);
  /* Cancelled QMP calls finish in the loop: let them, before anything else happens. */
  rt_spin(20);
}

void rt_restart(RtNode *n)
{
  rt_stop_manager(n);
  rt_start(n);
}

void rt_reload(RtNode *n)
{
  vmlet_manager_reload(n->mgr);
}

VmletManager *rt_manager(RtNode *n)
{
  return n->mgr;
}

const char *rt_root(RtNode *n)
{
  return n->root;
}

const char *rt_state_dir(RtNode *n)
{
  return n->state_dir;
}

guint rt_standins(RtNode *n)
{
  return n->pids->len;
}

gboolean rt_proc_alive(pid_t pid)
{
  g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
  g_autofree char *data = NULL;
  if (!g_file_get_contents(path, &data, NULL, NULL))
    return FALSE;
  const char *p = strrchr(data, ')');
  return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

void rt_node_free(RtNode *n)
{
  if (!n)
    return;
  rt_stop_manager(n);
  /* QEMUs outlive vmletd; the test's do not outlive the test. They are the test's
   * children: reaped here, after vmletd's own reaping had its chance. */
  for (guint i = 0; i < n->pids->len; i++) {
    pid_t pid = g_array_index(n->pids, pid_t, i);
    if (kill(pid, 0) == 0 && waitpid(pid, NULL, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
    }
  }
  g_hash_table_unref(n->vms);
  rt_spin(10);
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", n->root);
  if (system(cmd) != 0)
    g_warning("could not remove %s", n->root);
  g_array_unref(n->pids);
  g_free(n->root);
  g_free(n->config_dir);
  g_free(n->state_dir);
  g_free(n->run_dir);
  g_free(n->disk_dir);
  g_free(n);
}

/* ---- drop-ins ---- */

static void write_dropin(RtNode *n, const char *dir, const char *name, const char *text)
{
  g_autofree char *file = g_strdup_printf("%s.json", name);
  g_autofree char *path = g_build_filename(n->config_dir, dir, file, NULL);
  g_autoptr(GError) error = NULL;
  g_file_set_contents(path, text, -1, &error); /* a rename: never read half-written */
  g_assert_no_error(error);
}

static void remove_dropin(RtNode *n, const char *dir, const char *name)
{
  g_autofree char *file = g_strdup_printf("%s.json", name);
  g_autofree char *path = g_build_filename(n->config_dir, dir, file, NULL);
  g_assert_cmpint(g_unlink(path), ==, 0);
}

void rt_write_disk(RtNode *n, const char *name)
{
  g_autofree char *file = g_strdup_printf("%s.qcow2", name);
  g_autofree char *path = g_build_filename(n->disk_dir, file, NULL);
  /* Nothing opens it: the stand-in ignores its arguments. */
  g_assert_true(g_file_set_contents(path, "", 0, NULL));
  g_autofree char *text = g_strdup_printf(
      "{\"apiVersion\": \"" API "\", \"kind\": \"VirtualDisk\", \"metadata\": {\"name\": "
      "\"%s\"}, \"spec\": {\"local\": {\"path\": \"%s\"}}}",
      name, path);
  write_dropin(n, "disks.d", name, text);
}

static RtVm *rt_vm_of(RtNode *n, const char *name)
{
  RtVm *v = g_hash_table_lookup(n->vms, name);
  g_assert_nonnull(v);
  return v;
}

pid_t rt_pid(RtNode *n, const char *vm)
{
  VmletVm *v = n->mgr ? vmlet_manager_lookup(n->mgr, "default", vm) : NULL;
  return v ? pid_of(v) : 0;
}

/* QEMU answers quit, says why it shuts down, exits and so closes its socket. */
static void on_quit(FakeQmp *fq, const char *command, JsonObject *args, gpointer data)
{
  RtVm *v = data;
  fake_qmp_emit(fq, "SHUTDOWN", "{\"guest\": false, \"reason\": \"host-qmp-quit\"}");
  pid_t pid = rt_pid(v->node, v->name);
  if (pid)
    kill(pid, SIGTERM);
  fake_qmp_disconnect(fq);
}

static gboolean on_guest_powers_off(gpointer data)
{
  RtVm *v = data;
  v->guest_timer = 0;
  /* -no-shutdown: QEMU reports the power-off and stops the vCPUs, and waits for quit. */
  fake_qmp_emit(v->fq, "SHUTDOWN", "{\"guest\": true, \"reason\": \"guest-shutdown\"}");
  fake_qmp_emit(v->fq, "STOP", NULL);
  return G_SOURCE_REMOVE;
}

static void on_powerdown(FakeQmp *fq, const char *command, JsonObject *args, gpointer data)
{
  RtVm *v = data;
  if (!v->ignores_button && !v->guest_timer)
    v->guest_timer = g_timeout_add(10, on_guest_powers_off, v); /* the guest takes a moment */
}

static RtVm *ensure_fake(RtNode *n, const char *name)
{
  RtVm *v = g_hash_table_lookup(n->vms, name);
  if (v)
    return v;
  v = g_new0(RtVm, 1);
  v->node = n;
  v->name = g_strdup(name);
  g_autofree char *leaf = g_strdup_printf("default.%s", name);
  g_autofree char *dir = g_build_filename(n->run_dir, "vms", leaf, NULL);
  must_mkdir(dir);
  g_autofree char *sock = g_build_filename(dir, "qmp.sock", NULL);
  g_autoptr(GError) error = NULL;
  v->fq = fake_qmp_new(sock, &error);
  g_assert_no_error(error);
  FakeQmp *fq = v->fq;
  fake_qmp_reply(fq, "query-status", NULL,
                 "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
                 "\"running\": true}}");
  fake_qmp_reply(fq, "qom-get", "{\"path\": \"/machine\", \"property\": \"type\"}",
                 "{\"return\": \"pc-q35-7.2-machine\"}");
  fake_qmp_reply(fq, "qom-list", "{\"path\": \"/machine/peripheral\"}", "{\"return\": []}");
  fake_qmp_reply(fq, "query-named-block-nodes", NULL, "{\"return\": []}");
  fake_qmp_on_command(fq, "quit", on_quit, v);
  fake_qmp_on_command(fq, "system_powerdown", on_powerdown, v);
  g_hash_table_insert(n->vms, v->name, v);
  return v;
}

void rt_write_vm(RtNode *n, const char *name, const char *spec_extra)
{
  g_autofree char *disk = g_strdup_printf("%s-root", name);
  rt_write_disk(n, disk);
  ensure_fake(n, name);
  g_autofree char *text = g_strdup_printf(
      "{\"apiVersion\": \"" API "\", \"kind\": \"VirtualMachine\", \"metadata\": {\"name\": "
      "\"%s\"}, \"spec\": {\"virtualMachineClassName\": \"generic\", \"cpu\": {\"cores\": 1, "
      "\"coreFraction\": \"100%%\"}, \"memory\": {\"size\": \"64Mi\"}, \"blockDeviceRefs\": "
      "[{\"kind\": \"VirtualDisk\", \"name\": \"%s\"}]%s%s}}",
      name, disk, spec_extra ? ", " : "", spec_extra ? spec_extra : "");
  write_dropin(n, "vms.d", name, text);
}

void rt_remove_vm(RtNode *n, const char *name)
{
  remove_dropin(n, "vms.d", name);
}

void rt_write_attachment(RtNode *n, const char *name, const char *vm, const char *disk)
{
  g_autofree char *text = g_strdup_printf(
      "{\"apiVersion\": \"" API "\", \"kind\": \"VirtualMachineBlockDeviceAttachment\", "
      "\"metadata\": {\"name\": \"%s\"}, \"spec\": {\"virtualMachineName\": \"%s\", "
      "\"blockDeviceRef\": {\"kind\": \"VirtualDisk\", \"name\": \"%s\"}}}",
      name, vm, disk);
  write_dropin(n, "attachments.d", name, text);
}

void rt_remove_attachment(RtNode *n, const char *name)
{
  remove_dropin(n, "attachments.d", name);
}

/* ---- the VM ---- */

VmletVm *rt_vm(RtNode *n, const char *name)
{
  return n->mgr ? vmlet_manager_lookup(n->mgr, "default", name) : NULL;
}

FakeQmp *rt_fake(RtNode *n, const char *vm)
{
  return rt_vm_of(n, vm)->fq;
}

void rt_guest_ignores_button(RtNode *n, const char *vm, gboolean ignores)
{
  rt_vm_of(n, vm)->ignores_button = ignores;
}

void rt_crash(RtNode *n, const char *vm, int sig)
{
  pid_t pid = rt_pid(n, vm);
  g_assert_cmpint(pid, >, 0);
  g_assert_cmpint(kill(pid, sig), ==, 0);
  /* A dead QEMU's socket closes with it. */
  fake_qmp_disconnect(rt_fake(n, vm));
}
