/* The node's cgroup backend: chosen once, then every VM goes through the same calls. */
#include "cgroup-internal.h"

#include <sys/statfs.h>
#include <sys/stat.h>

#include "vmlet-error.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CGROUP_ROOT "/sys/fs/cgroup"

/* ---- "none": no limits (development), QEMU stays where the agent is ---- */

static void none_place(VmletCgroups *cg, const char *namespace, const char *name, pid_t pid,
                       const VmResources *res, GTask *task)
{
  vmlet_cgroup_task_return_location(task, g_strdup(""), NULL);
}

static void none_update_cpu(VmletCgroups *cg, const char *location, const VmResources *res,
                            GTask *task)
{
  g_task_return_boolean(task, TRUE);
  g_object_unref(task);
}

static gboolean none_read(VmletCgroups *cg, const char *location, VmResources *out,
                          GError **error)
{
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
              "cgroup-manager is none: the VM has no cgroup of its own");
  return FALSE;
}

static GArray *none_pids(VmletCgroups *cg, const char *location, GError **error)
{
  none_read(cg, location, NULL, error);
  return NULL;
}

static void none_remove(VmletCgroups *cg, const char *location)
{
}

static char *none_describe(VmletCgroups *cg, const char *location)
{
  return g_strdup("none (cgroup-manager=none: no limits enforced)");
}

static void none_free(gpointer p)
{
}

const VmletCgroupOps vmlet_cgroup_none_ops = {
    .place = none_place,
    .update_cpu = none_update_cpu,
    .read = none_read,
    .pids = none_pids,
    .remove = none_remove,
    .describe = none_describe,
    .free = none_free,
};

/* ---- choice ---- */

static gboolean booted_with_systemd(void)
{
  /* sd_booted()'s test: this directory exists only when PID 1 is systemd. */
  struct stat st;
  return lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

static gboolean unified_at_root(void)
{
  struct statfs fs;
  return statfs(CGROUP_ROOT, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

static const VmletCgroupOps *ops_of(VmletCgroupManagerKind kind)
{
  switch (kind) {
  case VMLET_CGROUP_SYSTEMD:
    return &vmlet_cgroup_systemd_ops;
  case VMLET_CGROUP_FS_V2:
    return &vmlet_cgroup_v2_ops;
  case VMLET_CGROUP_FS_V1:
    return &vmlet_cgroup_v1_ops;
  case VMLET_CGROUP_NONE:
  case VMLET_CGROUP_AUTO:
    break;
  }
  return &vmlet_cgroup_none_ops;
}

static VmletCgroups *wrap(VmletCgroupManagerKind kind, gpointer backend)
{
  VmletCgroups *cg = g_new0(VmletCgroups, 1);
  cg->refs = 1;
  cg->kind = kind;
  cg->ops = ops_of(kind);
  cg->backend = backend;
  return cg;
}

VmletCgroups *vmlet_cgroups_new_fs(VmletCgroupManagerKind kind, const char *root,
                                   const char *parent, GError **error)
{
  gpointer backend = NULL;
  switch (kind) {
  case VMLET_CGROUP_FS_V2:
    backend = vmlet_cgroup_v2_new(root, parent, error);
    break;
  case VMLET_CGROUP_FS_V1:
    backend = vmlet_cgroup_v1_new(root, parent, error);
    break;
  case VMLET_CGROUP_AUTO:
  case VMLET_CGROUP_SYSTEMD:
  case VMLET_CGROUP_NONE:
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s is not a cgroupfs backend",
                vmlet_cgroup_manager_name(kind));
    return NULL;
  }
  if (!backend) {
    g_prefix_error(error, "cgroup-manager %s: ", vmlet_cgroup_manager_name(kind));
    return NULL;
  }
  return wrap(kind, backend);
}

VmletCgroups *vmlet_cgroups_new(const VmletNode *node, GError **error)
{
  VmletCgroupManagerKind kind = node->cgroup_manager;
  if (kind == VMLET_CGROUP_AUTO)
    kind = booted_with_systemd() ? VMLET_CGROUP_SYSTEMD
           : unified_at_root()   ? VMLET_CGROUP_FS_V2
                                 : VMLET_CGROUP_FS_V1;
  switch (kind) {
  case VMLET_CGROUP_SYSTEMD:
    return wrap(kind, vmlet_cgroup_systemd_new(node->slice, error));
  case VMLET_CGROUP_FS_V2:
  case VMLET_CGROUP_FS_V1:
    return vmlet_cgroups_new_fs(kind, CGROUP_ROOT, node->cgroup_parent, error);
  case VMLET_CGROUP_NONE:
  case VMLET_CGROUP_AUTO:
    break;
  }
  return wrap(VMLET_CGROUP_NONE, NULL);
}

void vmlet_cgroups_free(VmletCgroups *cg)
{
  if (!cg || !g_atomic_int_dec_and_test(&cg->refs))
    return;
  if (cg->backend)
    cg->ops->free(cg->backend);
  g_free(cg);
}

VmletCgroupManagerKind vmlet_cgroups_kind(VmletCgroups *cg)
{
  return cg->kind;
}

typedef struct {
  VmletCgroups *cg; /* a reference: the worker may outlive the manager at shutdown */
  char *namespace, *name;
  pid_t pid;
  VmResources res;
} Placement;

static void placement_free(gpointer data)
{
  Placement *p = data;
  vmlet_cgroups_free(p->cg);
  g_free(p->namespace);
  g_free(p->name);
  g_free(p);
}

static void place_in_thread(GTask *task, gpointer source, gpointer data,
                            GCancellable *cancellable)
{
  Placement *p = data;
  GError *error = NULL;
  char *location = p->cg->ops->place_sync(p->cg, p->namespace, p->name, p->pid, &p->res, &error);
  if (location)
    g_task_return_pointer(task, location, g_free);
  else
    g_task_return_error(task, error);
}

void vmlet_cgroups_place_async(VmletCgroups *cg, const char *namespace, const char *name,
                               pid_t pid, const VmResources *res, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_cgroups_place_async);
  if (cg->ops->place) {
    cg->ops->place(cg, namespace, name, pid, res, task);
    return;
  }
  /* The first move into a cgroup v1 waits for an RCU grace period in the kernel (about
   * 13 ms here): in a worker, so the main loop serves other VMs meanwhile. */
  Placement *p = g_new0(Placement, 1);
  g_atomic_int_inc(&cg->refs);
  p->cg = cg;
  p->namespace = g_strdup(namespace);
  p->name = g_strdup(name);
  p->pid = pid;
  p->res = *res;
  g_task_set_task_data(task, p, placement_free);
  g_task_run_in_thread(task, place_in_thread);
  g_object_unref(task);
}

char *vmlet_cgroups_place_finish(VmletCgroups *cg, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer(G_TASK(result), error);
}

void vmlet_cgroups_update_cpu_async(VmletCgroups *cg, const char *location,
                                    const VmResources *res, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_cgroups_update_cpu_async);
  cg->ops->update_cpu(cg, location, res, task);
}

gboolean vmlet_cgroups_update_cpu_finish(VmletCgroups *cg, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

gboolean vmlet_cgroups_read(VmletCgroups *cg, const char *location, VmResources *out,
                            GError **error)
{
  return cg->ops->read(cg, location, out, error);
}

GArray *vmlet_cgroups_pids(VmletCgroups *cg, const char *location, GError **error)
{
  return cg->ops->pids(cg, location, error);
}

void vmlet_cgroups_remove(VmletCgroups *cg, const char *location)
{
  if (location && *location)
    cg->ops->remove(cg, location);
}

char *vmlet_cgroups_describe(VmletCgroups *cg, const char *location)
{
  return cg->ops->describe(cg, location);
}
