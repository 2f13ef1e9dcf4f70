/* One contract for the three cgroup backends (cgroup.h), run against each:
 *
 *  - cgroupfs v1 for real (these machines mount cpu, cpuacct, memory and pids as v1),
 *    nested below this test's own cgroups;
 *  - cgroupfs v2 against a directory tree with cgroupfs's files (cgroup2 here has none of
 *    the cpu, memory or pids controllers, so a real v2 group cannot be made);
 *  - systemd over sd-bus against a private dbus-daemon and tests/fakes/fake-systemd1.py.
 *
 * The contract: a gated child is placed with the limits, the limits read back equal, the
 * child is listed in the group, a CPU update reads back, a second placement of the same VM
 * while it runs is refused (VMLET_ERROR_EXISTS), and the group is gone once the child has
 * exited and it was removed. Backend-specific checks follow each run. */
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <json-glib/json-glib.h>
#include <string.h>

#include "cgroup.h"
#include "process.h"
#include "resources.h"
#include "vmlet-error.h"

#define NS "test-ns"
#define NAME "my-vm"

typedef struct {
  GMainLoop *loop;
  GAsyncResult *result;
} Wait;

static void on_done(GObject *src, GAsyncResult *res, gpointer data)
{
  Wait *w = data;
  w->result = g_object_ref(res);
  g_main_loop_quit(w->loop);
}

static char *place(VmletCgroups *cg, pid_t pid, const VmResources *res, GError **error)
{
  Wait w = {.loop = g_main_loop_new(NULL, FALSE)};
  vmlet_cgroups_place_async(cg, NS, NAME, pid, res, NULL, on_done, &w);
  g_main_loop_run(w.loop);
  char *loc = vmlet_cgroups_place_finish(cg, w.result, error);
  g_object_unref(w.result);
  g_main_loop_unref(w.loop);
  return loc;
}

static gboolean update(VmletCgroups *cg, const char *loc, const VmResources *res, GError **error)
{
  Wait w = {.loop = g_main_loop_new(NULL, FALSE)};
  vmlet_cgroups_update_cpu_async(cg, loc, res, NULL, on_done, &w);
  g_main_loop_run(w.loop);
  gboolean ok = vmlet_cgroups_update_cpu_finish(cg, w.result, error);
  g_object_unref(w.result);
  g_main_loop_unref(w.loop);
  return ok;
}

static VmResources limits(guint cores, guint fraction)
{
  VmSpec spec = {.cores = cores, .core_fraction = fraction, .memory_bytes = 256ull << 20};
  VmResources r;
  vm_resources_compute(&spec, VMLET_ACCEL_TCG, VMLET_CPU_LIMIT_GUARANTEE, &r);
  return r;
}

/* A child held at its gate before exec, as vmletd holds QEMU while it places it. */
static pid_t spawn_gated(int *gate)
{
  const char *const argv[] = {"/bin/sleep", "600", NULL};
  VmletSpawnOptions opts = {.gated = TRUE};
  VmletProcId id;
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_proc_spawn(argv, STDERR_FILENO, &opts, &id, gate, &error));
  g_assert_no_error(error);
  return id.pid;
}

static void assert_reads_back(VmletCgroups *cg, const char *loc, const VmResources *want)
{
  g_autoptr(GError) error = NULL;
  VmResources got;
  g_assert_true(vmlet_cgroups_read(cg, loc, &got, &error));
  g_assert_no_error(error);
  if (vmlet_cgroups_kind(cg) == VMLET_CGROUP_FS_V1)
    g_assert_cmpuint(got.cpu_shares, ==, want->cpu_shares);
  else
    g_assert_cmpuint(got.cpu_weight, ==, want->cpu_weight);
  g_assert_cmpuint(got.cpu_quota_us, ==, want->cpu_quota_us);
  g_assert_cmpuint(got.cpu_period_us, ==, want->cpu_period_us);
  g_assert_cmpuint(got.memory_max_bytes, ==, want->memory_max_bytes);
  g_assert_cmpuint(got.pids_max, ==, want->pids_max);
}

static gboolean lists(VmletCgroups *cg, const char *loc, pid_t pid)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) pids = vmlet_cgroups_pids(cg, loc, &error);
  g_assert_no_error(error);
  for (guint i = 0; i < pids->len; i++)
    if (g_array_index(pids, pid_t, i) == pid)
      return TRUE;
  return FALSE;
}

/* Runs the contract; returns the location (for backend checks) after the child is gone,
 * and the pid it placed. */
static char *contract(VmletCgroups *cg, pid_t *placed)
{
  int gate = -1;
  VmletProcId id = {.pid = spawn_gated(&gate)};
  *placed = id.pid;
  g_autoptr(GError) error = NULL;

  VmResources r1 = limits(1, 10);
  char *loc = place(cg, id.pid, &r1, &error);
  g_assert_no_error(error);
  g_assert_nonnull(loc);
  g_test_message("placed %d at %s", (int)id.pid, loc);
  assert_reads_back(cg, loc, &r1);
  g_assert_true(lists(cg, loc, id.pid));

  vmlet_proc_release(gate, TRUE);
  VmResources r2 = limits(1, 50);
  g_assert_true(update(cg, loc, &r2, &error));
  g_assert_no_error(error);
  assert_reads_back(cg, loc, &r2);
  g_assert_true(lists(cg, loc, id.pid));

  /* The same VM again while its process runs: refused, the running one untouched. */
  g_autofree char *again = place(cg, id.pid, &r1, &error);
  g_assert_null(again);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_EXISTS);
  g_test_message("second placement: %s", error->message);
  g_clear_error(&error);
  assert_reads_back(cg, loc, &r2);

  kill(id.pid, SIGKILL);
  g_assert_cmpint(waitpid(id.pid, NULL, 0), ==, id.pid);
  vmlet_cgroups_remove(cg, loc);
  return loc;
}

/* ---- cgroupfs v1, real ---- */

/* The v1 backend on this host, its groups below parent (relative: below this test's own
 * cgroups); NULL, the test skipped with the reason, where it cannot run. */
static VmletCgroups *real_v1(const char *parent)
{
  if (geteuid() != 0) {
    g_test_skip("cgroupfs v1: needs root to create cgroups");
    return NULL;
  }
  g_autoptr(GError) error = NULL;
  VmletCgroups *cg = vmlet_cgroups_new_fs(VMLET_CGROUP_FS_V1, "/sys/fs/cgroup", parent, &error);
  if (!cg) {
    g_autofree char *why = g_strdup_printf("cgroupfs v1 is not usable here: %s", error->message);
    g_test_skip(why);
  }
  return cg;
}

static void test_v1(void)
{
  g_autofree char *parent = g_strdup_printf("vmlet-contract-%d", (int)getpid());
  g_autoptr(VmletCgroups) cg = real_v1(parent);
  if (!cg)
    return;
  pid_t pid = 0;
  g_autofree char *loc = contract(cg, &pid);
  /* Every hierarchy named, each path below this process's own cgroup there. */
  g_auto(GStrv) pairs = g_strsplit(loc, " ", -1);
  g_assert_cmpuint(g_strv_length(pairs), >=, 3);
  for (guint i = 0; pairs[i]; i++) {
    const char *colon = strchr(pairs[i], ':');
    g_assert_nonnull(colon);
    g_autofree char *suffix = g_strdup_printf("/%s/" NS "." NAME, parent);
    g_assert_true(g_str_has_suffix(colon + 1, suffix));
    g_autofree char *controller = g_strndup(pairs[i], (gsize)(colon - pairs[i]));
    g_autofree char *dir = g_strdup_printf("/sys/fs/cgroup/%s%s", controller, colon + 1);
    g_assert_false(g_file_test(dir, G_FILE_TEST_EXISTS)); /* removed */
    g_autofree char *parent_dir = g_path_get_dirname(dir);
    g_rmdir(parent_dir);
  }
}

/* A v1 child really is where the location says: /proc/PID/cgroup agrees, for each
 * hierarchy, while the limits are enforced by the kernel (not just written). */
static void test_v1_process_placed(void)
{
  g_autofree char *parent = g_strdup_printf("vmlet-placed-%d", (int)getpid());
  g_autoptr(VmletCgroups) cg = real_v1(parent);
  if (!cg)
    return;
  g_autoptr(GError) error = NULL;
  int gate = -1;
  VmletProcId id = {.pid = spawn_gated(&gate)};
  VmResources r = limits(2, 20);
  g_autofree char *loc = place(cg, id.pid, &r, &error);
  g_assert_no_error(error);
  vmlet_proc_release(gate, TRUE);
  g_autofree char *path = g_strdup_printf("/proc/%d/cgroup", (int)id.pid);
  g_autofree char *own = NULL;
  g_assert_true(g_file_get_contents(path, &own, NULL, NULL));
  g_auto(GStrv) pairs = g_strsplit(loc, " ", -1);
  for (guint i = 0; pairs[i]; i++) {
    const char *colon = strchr(pairs[i], ':');
    g_autofree char *controller = g_strndup(pairs[i], (gsize)(colon - pairs[i]));
    /* "N:cpu:/path\n" (or "N:cpu,cpuacct:/path" when co-mounted) */
    gboolean found = FALSE;
    g_auto(GStrv) lines = g_strsplit(own, "\n", -1);
    for (guint j = 0; lines[j]; j++) {
      g_auto(GStrv) f = g_strsplit(lines[j], ":", 3);
      if (g_strv_length(f) != 3)
        continue;
      g_auto(GStrv) cs = g_strsplit(f[1], ",", -1);
      if (g_strv_contains((const char *const *)cs, controller)) {
        g_assert_cmpstr(f[2], ==, colon + 1);
        found = TRUE;
      }
    }
    g_assert_true(found);
  }
  /* cpu.cfs_quota_us as the kernel holds it: 2 cores = 200 ms per 100 ms period. */
  g_autofree char *cpu_dir = NULL;
  for (guint i = 0; pairs[i]; i++)
    if (g_str_has_prefix(pairs[i], "cpu:"))
      cpu_dir = g_strdup_printf("/sys/fs/cgroup/cpu%s", pairs[i] + 4);
  g_autofree char *quota = NULL;
  g_autofree char *quota_path = g_build_filename(cpu_dir, "cpu.cfs_quota_us", NULL);
  g_assert_true(g_file_get_contents(quota_path, &quota, NULL, NULL));
  g_assert_cmpstr(g_strstrip(quota), ==, "200000");
  kill(id.pid, SIGKILL);
  waitpid(id.pid, NULL, 0);
  vmlet_cgroups_remove(cg, loc);
  for (guint i = 0; pairs[i]; i++) {
    const char *colon = strchr(pairs[i], ':');
    g_autofree char *controller = g_strndup(pairs[i], (gsize)(colon - pairs[i]));
    g_autofree char *dir = g_strdup_printf("/sys/fs/cgroup/%s%s", controller, colon + 1);
    g_autofree char *parent_dir = g_path_get_dirname(dir);
    g_rmdir(parent_dir);
  }
}

/* ---- cgroupfs v2, on a directory tree with cgroupfs's files ---- */

static void write_file(const char *dir, const char *name, const char *content)
{
  g_autofree char *path = g_build_filename(dir, name, NULL);
  g_assert_true(g_file_set_contents(path, content, -1, NULL));
}

static char *read_file(const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename(dir, name, NULL);
  char *s = NULL;
  g_assert_true(g_file_get_contents(path, &s, NULL, NULL));
  return s;
}

static void rm_rf(const char *dir)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *n;
  while (d && (n = g_dir_read_name(d))) {
    g_autofree char *p = g_build_filename(dir, n, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR))
      rm_rf(p);
    else
      g_unlink(p);
  }
  g_rmdir(dir);
}

static void test_v2_tree(void)
{
  g_autofree char *root = g_dir_make_tmp("vmlet-cgroup2-XXXXXX", NULL);
  write_file(root, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  write_file(root, "cgroup.subtree_control", "");
  write_file(root, "cgroup.procs", "");
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletCgroups) cg = vmlet_cgroups_new_fs(VMLET_CGROUP_FS_V2, root, "/machine",
                                                    &error);
  g_assert_no_error(error);
  pid_t pid = 0;
  g_autofree char *loc = contract(cg, &pid);
  g_assert_cmpstr(loc, ==, "/machine/" NS "." NAME);
  /* The controllers were delegated at every level down to the parent, in one write. */
  g_autofree char *at_root = read_file(root, "cgroup.subtree_control");
  g_assert_cmpstr(at_root, ==, "+cpu +memory +pids");
  g_autofree char *machine = g_build_filename(root, "machine", NULL);
  g_autofree char *at_parent = read_file(machine, "cgroup.subtree_control");
  g_assert_cmpstr(at_parent, ==, "+cpu +memory +pids");
  /* cgroupfs's own formats: "quota period" in cpu.max. */
  g_autofree char *vmdir = g_build_filename(machine, NS "." NAME, NULL);
  g_autofree char *max = read_file(vmdir, "cpu.max");
  g_assert_cmpstr(max, ==, "100000 100000");
  rm_rf(root);
}

static void test_v2_refused_without_controllers(void)
{
  /* What these machines have: cgroup2 with only hugetlb. */
  g_autofree char *root = g_dir_make_tmp("vmlet-cgroup2-XXXXXX", NULL);
  write_file(root, "cgroup.controllers", "hugetlb\n");
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletCgroups) cg = vmlet_cgroups_new_fs(VMLET_CGROUP_FS_V2, root, "/machine",
                                                    &error);
  g_assert_null(cg);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
  g_assert_nonnull(strstr(error->message, "the cpu, memory and pids controllers are needed, "
                                          "found \"hugetlb\""));
  rm_rf(root);
}

/* ---- systemd, over a private bus ---- */

typedef struct {
  char *dir, *log, *address;
  GSubprocess *daemon, *fake;
} Bus;

/* The bus directory; DBUS_SYSTEM_BUS_ADDRESS points there from the start of main (setenv
 * is not thread-safe once GLib has started threads). */
static char *bus_dir;

static void die_with_test(gpointer data)
{
  prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static GSubprocess *spawn_helper(const char *address, const char *const *argv)
{
  g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                                               G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  g_subprocess_launcher_setenv(l, "DBUS_SESSION_BUS_ADDRESS", address, TRUE);
  g_subprocess_launcher_set_child_setup(l, die_with_test, NULL, NULL);
  g_autoptr(GError) error = NULL;
  GSubprocess *p = g_subprocess_launcher_spawnv(l, argv, &error);
  g_assert_no_error(error);
  return p;
}

static GSubprocess *start_daemon(Bus *b)
{
  const char *const argv[] = {"/usr/bin/dbus-daemon", "--session", "--nofork", "--nopidfile",
                              "--address", b->address, NULL};
  GSubprocess *p = spawn_helper(b->address, argv);
  g_autofree char *sock = g_build_filename(b->dir, "bus", NULL);
  for (int i = 0; i < 500 && !g_file_test(sock, G_FILE_TEST_EXISTS); i++)
    g_usleep(10000);
  return p;
}

static GSubprocess *start_fake(Bus *b)
{
  g_autofree char *script = g_build_filename(g_getenv("VMLET_FAKES_DIR"), "fake-systemd1.py",
                                            NULL);
  const char *const argv[] = {"/usr/bin/python3", script, "--log", b->log, NULL};
  GSubprocess *p = spawn_helper(b->address, argv);
  g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p));
  g_autofree char *line = g_data_input_stream_read_line(in, NULL, NULL, NULL);
  g_assert_cmpstr(line, ==, "ready");
  return p;
}

static gboolean bus_start(Bus *b, char **why)
{
  if (!g_file_test("/usr/bin/dbus-daemon", G_FILE_TEST_IS_EXECUTABLE)) {
    *why = g_strdup("dbus-daemon is not installed (tests/setup.sh installs it)");
    return FALSE;
  }
  g_autoptr(GError) error = NULL;
  GSubprocess *check = g_subprocess_new(G_SUBPROCESS_FLAGS_STDERR_SILENCE, &error,
                                        "/usr/bin/python3", "-c", "import dbus, gi", NULL);
  if (!check || !g_subprocess_wait_check(check, NULL, NULL)) {
    *why = g_strdup("python3-dbus or python3-gi is not installed (tests/setup.sh installs them)");
    g_clear_object(&check);
    return FALSE;
  }
  g_object_unref(check);
  b->dir = g_strdup(bus_dir);
  g_mkdir_with_parents(b->dir, 0700);
  b->log = g_build_filename(b->dir, "calls.jsonl", NULL);
  b->address = g_strdup_printf("unix:path=%s/bus", b->dir);
  b->daemon = start_daemon(b);
  b->fake = start_fake(b);
  return TRUE;
}

static void bus_stop(Bus *b)
{
  if (b->fake) {
    g_subprocess_force_exit(b->fake);
    g_subprocess_wait(b->fake, NULL, NULL);
    g_clear_object(&b->fake);
  }
  if (b->daemon) {
    g_subprocess_force_exit(b->daemon);
    g_subprocess_wait(b->daemon, NULL, NULL);
    g_clear_object(&b->daemon);
  }
  if (b->dir)
    rm_rf(b->dir);
  g_free(b->dir);
  g_free(b->log);
  g_free(b->address);
}

/* The fake's record of one call, as parsed JSON lines (newest last). */
static GPtrArray *calls(Bus *b, const char *method)
{
  g_autofree char *data = NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  if (!g_file_get_contents(b->log, &data, NULL, NULL))
    return out;
  g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
  g_autofree char *needle = g_strdup_printf("\"method\": \"%s\"", method);
  for (guint i = 0; lines[i]; i++)
    if (strstr(lines[i], needle))
      g_ptr_array_add(out, g_strdup(lines[i]));
  return out;
}

static guint count_calls(Bus *b, const char *method)
{
  g_autoptr(GPtrArray) c = calls(b, method);
  return c->len;
}

/* The fake collects a scope within 100 ms of its last process exiting. */
static void wait_collected(Bus *b, guint n)
{
  for (int i = 0; i < 100 && count_calls(b, "collected") < n; i++)
    g_usleep(50000);
}

static void fake_call(Bus *b, const char *method, const char *arg)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *bus_opt = g_strconcat("--bus=", b->address, NULL);
  g_autoptr(GSubprocess) p =
      g_subprocess_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE, &error, "/usr/bin/dbus-send",
                       "--print-reply", bus_opt,
                       "--dest=org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                       method, arg ? arg : NULL, NULL);
  g_assert_no_error(error);
  g_subprocess_wait(p, NULL, NULL);
}

static void test_systemd(void)
{
  Bus b = {0};
  g_autofree char *why = NULL;
  if (!bus_start(&b, &why)) {
    g_test_skip(why);
    return;
  }
  VmletNode node = {.cgroup_manager = VMLET_CGROUP_SYSTEMD, .slice = "machine.slice"};
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletCgroups) cg = vmlet_cgroups_new(&node, &error);
  g_assert_no_error(error);
  pid_t pid = 0;
  g_autofree char *loc = contract(cg, &pid);
  g_assert_cmpstr(loc, ==, "vmlet-test\\x2dns-my\\x2dvm.scope");

  /* Exactly what was sent: unit name, mode, and every property with its D-Bus type. */
  g_autoptr(GPtrArray) starts = calls(&b, "StartTransientUnit");
  g_assert_cmpuint(starts->len, >=, 2);
  g_autoptr(JsonParser) p = json_parser_new();
  g_assert_true(json_parser_load_from_data(p, starts->pdata[0], -1, NULL));
  JsonObject *o = json_node_get_object(json_parser_get_root(p));
  g_assert_cmpstr(json_object_get_string_member(o, "unit"), ==, loc);
  g_assert_cmpstr(json_object_get_string_member(o, "mode"), ==, "fail");
  g_autoptr(JsonGenerator) gen = json_generator_new();
  json_generator_set_root(gen, json_object_get_member(o, "properties"));
  g_autofree char *props = json_generator_to_data(gen, NULL);
  VmResources r1 = limits(1, 10);
  g_autofree char *want = g_strdup_printf(
      "[[\"Description\",\"s\",\"vmlet VM test-ns/my-vm\"],[\"Slice\",\"s\",\"machine.slice\"],"
      "[\"PIDs\",\"au\",[%d]],[\"Delegate\",\"b\",true],[\"CollectMode\",\"s\",\"inactive-or-failed\"],"
      "[\"CPUWeight\",\"t\",%" G_GUINT64_FORMAT "],[\"CPUQuotaPerSecUSec\",\"t\",1000000],"
      "[\"CPUQuotaPeriodUSec\",\"t\",100000],[\"MemoryMax\",\"t\",%" G_GUINT64_FORMAT "],"
      "[\"TasksMax\",\"t\",%" G_GUINT64_FORMAT "]]",
      (int)pid, r1.cpu_weight, r1.memory_max_bytes, r1.pids_max);
  g_assert_cmpstr(props, ==, want);
  g_assert_cmpint(json_object_get_int_member(o, "aux"), ==, 0);

  /* The live update went out as a runtime SetUnitProperties of the CPU properties. */
  g_autoptr(GPtrArray) sets = calls(&b, "SetUnitProperties");
  g_assert_cmpuint(sets->len, ==, 1);
  VmResources r2 = limits(1, 50);
  g_autofree char *set_want = g_strdup_printf(
      "\"runtime\": true, \"properties\": [[\"CPUWeight\", \"t\", %" G_GUINT64_FORMAT
      "], [\"CPUQuotaPerSecUSec\", \"t\", 1000000], [\"CPUQuotaPeriodUSec\", \"t\", 100000]]",
      r2.cpu_weight);
  g_assert_nonnull(strstr(sets->pdata[0], set_want));

  /* The scope was collected once its process had gone. */
  wait_collected(&b, 1);
  g_assert_cmpuint(count_calls(&b, "collected"), ==, 1);
  bus_stop(&b);
}

/* The placement completes on JobRemoved, not on the method reply: the fake answers at once
 * and sends JobRemoved 0.5 s later, logging it before it is emitted. */
static void test_systemd_waits_for_job(void)
{
  Bus b = {0};
  g_autofree char *why = NULL;
  if (!bus_start(&b, &why)) {
    g_test_skip(why);
    return;
  }
  fake_call(&b, "org.vmlet.FakeSystemd.SetJobDelay", "double:0.5");
  VmletNode node = {.cgroup_manager = VMLET_CGROUP_SYSTEMD, .slice = "machine.slice"};
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletCgroups) cg = vmlet_cgroups_new(&node, &error);
  int gate = -1;
  VmletProcId id = {.pid = spawn_gated(&gate)};
  VmResources r = limits(1, 10);
  g_autofree char *loc = place(cg, id.pid, &r, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(loc, ==, "vmlet-test\\x2dns-my\\x2dvm.scope");
  g_assert_cmpuint(count_calls(&b, "JobRemoved"), ==, 1);

  /* A job that fails: the error carries systemd's result. */
  fake_call(&b, "org.vmlet.FakeSystemd.SetJobDelay", "double:0.05");
  fake_call(&b, "org.vmlet.FakeSystemd.SetJobResult", "string:failed");
  kill(id.pid, SIGKILL);
  waitpid(id.pid, NULL, 0);
  vmlet_proc_release(gate, FALSE);
  wait_collected(&b, 1);
  id.pid = spawn_gated(&gate);
  g_autofree char *failed = place(cg, id.pid, &r, &error);
  g_assert_null(failed);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_IO);
  g_assert_cmpstr(error->message, ==,
                  "systemd: the job starting vmlet-test\\x2dns-my\\x2dvm.scope finished with "
                  "result \"failed\"");
  g_clear_error(&error);
  vmlet_proc_release(gate, FALSE);
  waitpid(id.pid, NULL, 0);
  bus_stop(&b);
}

/* UnitExists (a scope of that name that does not go away) is retried, then reported with
 * systemd's error name; systemd gone from the bus, and the bus itself gone, are errors too,
 * and a bus that comes back is used again. */
static void test_systemd_errors(void)
{
  Bus b = {0};
  g_autofree char *why = NULL;
  if (!bus_start(&b, &why)) {
    g_test_skip(why);
    return;
  }
  VmletNode node = {.cgroup_manager = VMLET_CGROUP_SYSTEMD, .slice = "machine.slice"};
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletCgroups) cg = vmlet_cgroups_new(&node, &error);
  fake_call(&b, "org.vmlet.FakeSystemd.HoldUnit", "string:vmlet-test\\x2dns-my\\x2dvm.scope");
  VmResources r = limits(1, 10);
  g_autofree char *loc = place(cg, getpid(), &r, &error);
  g_assert_null(loc);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_EXISTS);
  g_assert_cmpstr(error->message, ==,
                  "systemd: StartTransientUnit(vmlet-test\\x2dns-my\\x2dvm.scope): "
                  "org.freedesktop.systemd1.UnitExists: Unit vmlet-test\\x2dns-my\\x2dvm.scope "
                  "already exists.");
  g_clear_error(&error);
  g_assert_cmpuint(count_calls(&b, "StartTransientUnit"), ==, 10);

  /* systemd leaves the bus: the call fails, nothing hangs. */
  fake_call(&b, "org.vmlet.FakeSystemd.Quit", NULL);
  g_subprocess_wait(b.fake, NULL, NULL);
  g_clear_object(&b.fake);
  loc = place(cg, getpid(), &r, &error);
  g_assert_null(loc);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_IO);
  g_test_message("systemd gone: %s", error->message);
  g_assert_true(g_str_has_prefix(error->message, "systemd: StartTransientUnit("));
  g_clear_error(&error);

  /* The bus itself goes away: an error naming the bus, then a new bus is used. */
  g_subprocess_force_exit(b.daemon);
  g_subprocess_wait(b.daemon, NULL, NULL);
  g_clear_object(&b.daemon);
  loc = place(cg, getpid(), &r, &error);
  g_assert_null(loc);
  g_test_message("bus gone: %s", error->message);
  g_assert_true(g_str_has_prefix(error->message, "systemd: "));
  g_clear_error(&error);
  b.daemon = start_daemon(&b);
  b.fake = start_fake(&b);
  int gate = -1;
  pid_t pid = spawn_gated(&gate);
  loc = place(cg, pid, &r, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(loc, ==, "vmlet-test\\x2dns-my\\x2dvm.scope");
  vmlet_proc_release(gate, FALSE);
  waitpid(pid, NULL, 0);
  bus_stop(&b);
}

static void test_unit_names(void)
{
  g_autofree char *a = vmlet_cgroups_unit_name("a-b", "c");
  g_autofree char *b = vmlet_cgroups_unit_name("a", "b-c");
  g_assert_cmpstr(a, ==, "vmlet-a\\x2db-c.scope");
  g_assert_cmpstr(b, ==, "vmlet-a-b\\x2dc.scope");
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  bus_dir = g_strdup_printf("%s/vmlet-bus-%d", g_get_tmp_dir(), (int)getpid());
  g_autofree char *address = g_strdup_printf("unix:path=%s/bus", bus_dir);
  g_setenv("DBUS_SYSTEM_BUS_ADDRESS", address, TRUE);
  /* A vanished bus peer must be an error, not SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  g_test_add_func("/cgroup/unit-names", test_unit_names);
  g_test_add_func("/cgroup/v1/contract", test_v1);
  g_test_add_func("/cgroup/v1/process-placed", test_v1_process_placed);
  g_test_add_func("/cgroup/v2/contract", test_v2_tree);
  g_test_add_func("/cgroup/v2/refused-without-controllers", test_v2_refused_without_controllers);
  g_test_add_func("/cgroup/systemd/contract", test_systemd);
  g_test_add_func("/cgroup/systemd/waits-for-job", test_systemd_waits_for_job);
  g_test_add_func("/cgroup/systemd/errors", test_systemd_errors);
  return g_test_run();
}
