/* cgroupfs v1, for hosts that still mount the legacy hierarchies (and these test
 * machines: cpu, cpuacct, memory and pids are v1 here, cgroup2 has none of them).
 *
 * The VM gets the same relative path in each hierarchy it needs: cpu (cpu.shares,
 * cpu.cfs_period_us, cpu.cfs_quota_us), memory (memory.limit_in_bytes), pids (pids.max),
 * and cpuacct when mounted (usage figures). Hierarchies may be co-mounted ("cpu,cpuacct"):
 * each mount is handled once. A relative parent is resolved per hierarchy against the
 * agent's own cgroup there, so the location records the path of every hierarchy:
 * "cpu:/machine/default.vm memory:/machine/default.vm ...". */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cgroup-internal.h"
#include "fileio.h"
#include "vmlet-error.h"

typedef struct {
  char *controller; /* cpu, cpuacct, memory, pids */
  char *mount;      /* where its hierarchy is mounted */
  char *parent;     /* absolute within that hierarchy */
  gboolean shared;  /* co-mounted with an earlier controller: same directories */
} Hierarchy;

typedef struct {
  GPtrArray *hier; /* Hierarchy * */
} V1;

static const struct {
  const char *name;
  gboolean required;
} controllers[] = {{"cpu", TRUE}, {"cpuacct", FALSE}, {"memory", TRUE}, {"pids", TRUE}};

static void hier_free(gpointer p)
{
  Hierarchy *h = p;
  g_free(h->controller);
  g_free(h->mount);
  g_free(h->parent);
  g_free(h);
}

static void v1_free(gpointer p)
{
  V1 *v = p;
  g_ptr_array_unref(v->hier);
  g_free(v);
}

/* Finds where controller's hierarchy is mounted below root (normally /sys/fs/cgroup):
 * the cgroup mounts of /proc/self/mountinfo whose super options name the controller. */
static char *find_mount(const char *root, const char *controller)
{
  g_autofree char *data = NULL;
  if (!vmlet_read_file_bounded("/proc/self/mountinfo", 1024 * 1024, &data, NULL, NULL))
    return NULL;
  g_autofree char *prefix = g_strconcat(root, "/", NULL);
  g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
  for (guint i = 0; lines[i]; i++) {
    /* id parent major:minor root mountpoint options [optional...] - fstype source super */
    const char *dash = strstr(lines[i], " - ");
    if (!dash)
      continue;
    g_auto(GStrv) pre = g_strsplit(lines[i], " ", 6);
    g_auto(GStrv) post = g_strsplit(dash + 3, " ", 3);
    if (g_strv_length(pre) < 5 || g_strv_length(post) < 3 || !g_str_equal(post[0], "cgroup") ||
        !g_str_has_prefix(pre[4], prefix))
      continue;
    g_auto(GStrv) opts = g_strsplit(post[2], ",", -1);
    if (g_strv_contains((const char *const *)opts, controller))
      return g_strdup(pre[4]);
  }
  return NULL;
}

gpointer vmlet_cgroup_v1_new(const char *root, const char *parent, GError **error)
{
  V1 *v = g_new0(V1, 1);
  v->hier = g_ptr_array_new_with_free_func(hier_free);
  for (gsize i = 0; i < G_N_ELEMENTS(controllers); i++) {
    const char *c = controllers[i].name;
    g_autofree char *mount = find_mount(root, c);
    if (!mount) {
      if (!controllers[i].required)
        continue;
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
                  "no cgroup v1 hierarchy with the %s controller is mounted under %s", c, root);
      v1_free(v);
      return NULL;
    }
    g_autofree char *own = NULL;
    if (parent[0] != '/' && !(own = vmlet_cgroup_self_path(c, error))) {
      v1_free(v);
      return NULL;
    }
    Hierarchy *h = g_new0(Hierarchy, 1);
    h->controller = g_strdup(c);
    h->parent = vmlet_cgroup_resolve_parent(parent, own);
    for (guint j = 0; j < v->hier->len; j++) {
      Hierarchy *o = v->hier->pdata[j];
      if (g_str_equal(o->mount, mount))
        h->shared = TRUE;
    }
    h->mount = g_steal_pointer(&mount);
    g_ptr_array_add(v->hier, h);
  }
  return v;
}

/* The directory of controller c in a location ("cpu:/p/x memory:/q/x ..."). */
static char *dir_in(V1 *v, const char *location, const char *c)
{
  g_auto(GStrv) pairs = g_strsplit(location, " ", -1);
  for (guint i = 0; pairs[i]; i++) {
    const char *colon = strchr(pairs[i], ':');
    if (!colon || strncmp(pairs[i], c, (gsize)(colon - pairs[i])) != 0 ||
        c[colon - pairs[i]] != '\0')
      continue;
    for (guint j = 0; j < v->hier->len; j++) {
      Hierarchy *h = v->hier->pdata[j];
      if (g_str_equal(h->controller, c))
        return g_build_filename(h->mount, colon + 1, NULL);
    }
  }
  return NULL;
}

static gboolean write_cpu(const char *dir, const VmResources *res, GError **error)
{
  /* The period first: the kernel checks the quota against it. */
  return vmlet_cgroup_write_u64(dir, "cpu.shares", res->cpu_shares, error) &&
         vmlet_cgroup_write_u64(dir, "cpu.cfs_period_us", res->cpu_period_us, error) &&
         vmlet_cgroup_write_u64(dir, "cpu.cfs_quota_us", res->cpu_quota_us, error);
}

static gboolean create_and_move(V1 *v, const char *location, pid_t pid, const VmResources *res,
                                GError **error)
{
  for (guint i = 0; i < v->hier->len; i++) {
    Hierarchy *h = v->hier->pdata[i];
    if (h->shared)
      continue;
    g_autofree char *dir = dir_in(v, location, h->controller);
    if (!vmlet_cgroup_mkdirs(dir, error))
      return FALSE;
    /* A group left by an earlier QEMU of this VM is reused once it is empty. */
    g_autoptr(GArray) left = vmlet_cgroup_read_pids(dir, NULL);
    if (left && left->len > 0) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_EXISTS, "cgroup %s still holds process %d",
                  dir, g_array_index(left, pid_t, 0));
      return FALSE;
    }
  }
  for (guint i = 0; i < v->hier->len; i++) {
    Hierarchy *h = v->hier->pdata[i];
    g_autofree char *dir = dir_in(v, location, h->controller);
    gboolean ok = TRUE;
    if (g_str_equal(h->controller, "cpu"))
      ok = write_cpu(dir, res, error);
    else if (g_str_equal(h->controller, "memory"))
      ok = vmlet_cgroup_write_u64(dir, "memory.limit_in_bytes", res->memory_max_bytes, error);
    else if (g_str_equal(h->controller, "pids"))
      ok = vmlet_cgroup_write_u64(dir, "pids.max", res->pids_max, error);
    if (!ok)
      return FALSE;
  }
  /* Limits are in place before the process is: nothing runs unlimited. */
  for (guint i = 0; i < v->hier->len; i++) {
    Hierarchy *h = v->hier->pdata[i];
    g_autofree char *dir = dir_in(v, location, h->controller);
    if (!h->shared && !vmlet_cgroup_write_u64(dir, "cgroup.procs", (guint64)pid, error))
      return FALSE;
  }
  return TRUE;
}

static char *v1_place(VmletCgroups *cg, const char *namespace, const char *name, pid_t pid,
                      const VmResources *res, GError **error)
{
  V1 *v = cg->backend;
  g_autofree char *leaf = vmlet_cgroup_leaf(namespace, name);
  GString *location = g_string_new(NULL);
  for (guint i = 0; i < v->hier->len; i++) {
    Hierarchy *h = v->hier->pdata[i];
    g_autofree char *rel = g_build_filename(h->parent, leaf, NULL);
    g_string_append_printf(location, "%s%s:%s", location->len ? " " : "", h->controller, rel);
  }
  char *loc = g_string_free(location, FALSE);
  if (!create_and_move(v, loc, pid, res, error))
    g_clear_pointer(&loc, g_free);
  return loc;
}

static void v1_update_cpu(VmletCgroups *cg, const char *location, const VmResources *res,
                          GTask *task)
{
  g_autofree char *dir = dir_in(cg->backend, location, "cpu");
  GError *error = NULL;
  if (!dir)
    g_set_error(&error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "no cpu cgroup in \"%s\"", location);
  if (dir && write_cpu(dir, res, &error))
    g_task_return_boolean(task, TRUE);
  else
    g_task_return_error(task, error);
  g_object_unref(task);
}

static gboolean v1_read(VmletCgroups *cg, const char *location, VmResources *out, GError **error)
{
  V1 *v = cg->backend;
  g_autofree char *cpu = dir_in(v, location, "cpu");
  g_autofree char *mem = dir_in(v, location, "memory");
  g_autofree char *pids = dir_in(v, location, "pids");
  if (!cpu || !mem || !pids) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "\"%s\": expected cpu, memory and pids cgroups", location);
    return FALSE;
  }
  VmResources r = {0};
  guint64 quota = 0;
  g_autofree char *q = vmlet_cgroup_read(cpu, "cpu.cfs_quota_us", error);
  if (!q)
    return FALSE;
  quota = g_str_equal(q, "-1") ? G_MAXUINT64 : g_ascii_strtoull(q, NULL, 10);
  r.cpu_quota_us = quota;
  if (!vmlet_cgroup_read_u64(cpu, "cpu.shares", &r.cpu_shares, error) ||
      !vmlet_cgroup_read_u64(cpu, "cpu.cfs_period_us", &r.cpu_period_us, error) ||
      !vmlet_cgroup_read_u64(mem, "memory.limit_in_bytes", &r.memory_max_bytes, error) ||
      !vmlet_cgroup_read_u64(pids, "pids.max", &r.pids_max, error))
    return FALSE;
  *out = r;
  return TRUE;
}

static GArray *v1_pids(VmletCgroups *cg, const char *location, GError **error)
{
  g_autofree char *dir = dir_in(cg->backend, location, "cpu");
  if (!dir) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "no cpu cgroup in \"%s\"", location);
    return NULL;
  }
  return vmlet_cgroup_read_pids(dir, error);
}

static void v1_remove(VmletCgroups *cg, const char *location)
{
  V1 *v = cg->backend;
  for (guint i = 0; i < v->hier->len; i++) {
    Hierarchy *h = v->hier->pdata[i];
    g_autofree char *dir = dir_in(v, location, h->controller);
    if (dir && !h->shared)
      rmdir(dir);
  }
}

static char *v1_describe(VmletCgroups *cg, const char *location)
{
  return g_strdup_printf("cgroupfs v1 %s", location);
}

const VmletCgroupOps vmlet_cgroup_v1_ops = {
    .place_sync = v1_place,
    .update_cpu = v1_update_cpu,
    .read = v1_read,
    .pids = v1_pids,
    .remove = v1_remove,
    .describe = v1_describe,
    .free = v1_free,
};
