/* cgroupfs v2 (the unified hierarchy), for hosts without systemd as PID 1.
 *
 * <root><parent>/<namespace>.<name> with cpu.weight, cpu.max, memory.max and pids.max.
 * The controllers are enabled in cgroup.subtree_control of every level from the root down
 * to the parent; v2's "no internal processes" rule means the parent must hold no processes
 * itself, which is why the default parent (/machine) sits beside the agent, not below it. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "vmlet-error.h"

static const char *const needed[] = {"cpu", "memory", "pids"};

typedef struct {
  char *root;   /* the cgroup2 mount, /sys/fs/cgroup */
  char *parent; /* absolute within the hierarchy, e.g. /machine */
} V2;

static void v2_free(gpointer p)
{
  V2 *v = p;
  g_free(v->root);
  g_free(v->parent);
  g_free(v);
}

gpointer vmlet_cgroup_v2_new(const char *root, const char *parent, GError **error)
{
  g_autofree char *controllers = vmlet_cgroup_read(root, "cgroup.controllers", error);
  if (!controllers)
    return NULL;
  g_auto(GStrv) have = g_strsplit(controllers, " ", -1);
  for (gsize i = 0; i < G_N_ELEMENTS(needed); i++)
    if (!g_strv_contains((const char *const *)have, needed[i])) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
                  "%s/cgroup.controllers: the cpu, memory and pids controllers are needed, "
                  "found \"%s\" (are they bound to cgroup v1 hierarchies?)",
                  root, controllers);
      return NULL;
    }
  g_autofree char *own = NULL;
  if (parent[0] != '/' && !(own = vmlet_cgroup_self_path("", error)))
    return NULL;
  V2 *v = g_new0(V2, 1);
  v->root = g_strdup(root);
  v->parent = vmlet_cgroup_resolve_parent(parent, own);
  return v;
}

static char *dir_of(V2 *v, const char *location)
{
  return g_build_filename(v->root, location, NULL);
}

static gboolean enable_controllers(V2 *v, GError **error)
{
  /* Every level from the root to the parent delegates the controllers to its children. */
  g_auto(GStrv) parts = g_strsplit(v->parent + 1, "/", -1);
  g_autofree char *dir = g_strdup(v->root);
  for (guint i = 0;; i++) {
    g_autofree char *enabled = vmlet_cgroup_read(dir, "cgroup.subtree_control", NULL);
    g_auto(GStrv) on = g_strsplit(enabled ? enabled : "", " ", -1);
    g_autoptr(GString) plus = g_string_new(NULL);
    for (gsize c = 0; c < G_N_ELEMENTS(needed); c++)
      if (!g_strv_contains((const char *const *)on, needed[c]))
        g_string_append_printf(plus, "%s+%s", plus->len ? " " : "", needed[c]);
    if (plus->len && !vmlet_cgroup_write(dir, "cgroup.subtree_control", plus->str, error))
      return FALSE;
    if (!parts[i] || !*parts[i])
      return TRUE;
    g_autofree char *next = g_build_filename(dir, parts[i], NULL);
    if (!vmlet_cgroup_mkdirs(next, error))
      return FALSE;
    g_free(dir);
    dir = g_steal_pointer(&next);
  }
}

static gboolean write_cpu(const char *dir, const VmResources *res, GError **error)
{
  g_autofree char *max = g_strdup_printf("%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                                         res->cpu_quota_us, res->cpu_period_us);
  return vmlet_cgroup_write_u64(dir, "cpu.weight", res->cpu_weight, error) &&
         vmlet_cgroup_write(dir, "cpu.max", max, error);
}

static gboolean create_and_move(V2 *v, const char *dir, pid_t pid, const VmResources *res,
                                GError **error)
{
  if (!enable_controllers(v, error))
    return FALSE;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "creating cgroup %s: %s", dir,
                g_strerror(errno));
    return FALSE;
  }
  /* A group left by an earlier QEMU of this VM is reused once it is empty. */
  g_autoptr(GArray) left = vmlet_cgroup_read_pids(dir, NULL);
  if (left && left->len > 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_EXISTS, "cgroup %s still holds process %d", dir,
                g_array_index(left, pid_t, 0));
    return FALSE;
  }
  /* Limits are in place before the process is: nothing runs unlimited. */
  return write_cpu(dir, res, error) &&
         vmlet_cgroup_write_u64(dir, "memory.max", res->memory_max_bytes, error) &&
         vmlet_cgroup_write_u64(dir, "pids.max", res->pids_max, error) &&
         vmlet_cgroup_write_u64(dir, "cgroup.procs", (guint64)pid, error);
}

static char *v2_place(VmletCgroups *cg, const char *namespace, const char *name, pid_t pid,
                      const VmResources *res, GError **error)
{
  V2 *v = cg->backend;
  g_autofree char *leaf = vmlet_cgroup_leaf(namespace, name);
  char *location = g_strconcat(g_str_equal(v->parent, "/") ? "" : v->parent, "/", leaf, NULL);
  g_autofree char *dir = dir_of(v, location);
  if (!create_and_move(v, dir, pid, res, error))
    g_clear_pointer(&location, g_free);
  return location;
}

static void v2_update_cpu(VmletCgroups *cg, const char *location, const VmResources *res,
                          GTask *task)
{
  g_autofree char *dir = dir_of(cg->backend, location);
  GError *error = NULL;
  if (write_cpu(dir, res, &error))
    g_task_return_boolean(task, TRUE);
  else
    g_task_return_error(task, error);
  g_object_unref(task);
}

static gboolean v2_read(VmletCgroups *cg, const char *location, VmResources *out, GError **error)
{
  g_autofree char *dir = dir_of(cg->backend, location);
  VmResources r = {0};
  g_autofree char *max = vmlet_cgroup_read(dir, "cpu.max", error);
  if (!max)
    return FALSE;
  g_auto(GStrv) qp = g_strsplit(max, " ", 2);
  r.cpu_quota_us = g_str_equal(qp[0], "max") ? G_MAXUINT64 : g_ascii_strtoull(qp[0], NULL, 10);
  r.cpu_period_us = qp[1] ? g_ascii_strtoull(qp[1], NULL, 10) : 0;
  if (!vmlet_cgroup_read_u64(dir, "cpu.weight", &r.cpu_weight, error) ||
      !vmlet_cgroup_read_u64(dir, "memory.max", &r.memory_max_bytes, error) ||
      !vmlet_cgroup_read_u64(dir, "pids.max", &r.pids_max, error))
    return FALSE;
  *out = r;
  return TRUE;
}

static GArray *v2_pids(VmletCgroups *cg, const char *location, GError **error)
{
  g_autofree char *dir = dir_of(cg->backend, location);
  return vmlet_cgroup_read_pids(dir, error);
}

static void v2_remove(VmletCgroups *cg, const char *location)
{
  g_autofree char *dir = dir_of(cg->backend, location);
  rmdir(dir);
}

static char *v2_describe(VmletCgroups *cg, const char *location)
{
  return g_strdup_printf("cgroupfs v2 %s", location);
}

const VmletCgroupOps vmlet_cgroup_v2_ops = {
    .place_sync = v2_place,
    .update_cpu = v2_update_cpu,
    .read = v2_read,
    .pids = v2_pids,
    .remove = v2_remove,
    .describe = v2_describe,
    .free = v2_free,
};
