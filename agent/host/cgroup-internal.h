/* The table of functions each cgroup backend fills (cgroup.h is the public side). */
#pragma once

#include "cgroup.h"

typedef struct {
  /* Creates the group with res, moves pid in; the task returns the location (char *).
   * Either place (asynchronous, from the main loop) or place_sync (blocking: run in a
   * worker thread, since the kernel may take milliseconds to move a process). */
  void (*place)(VmletCgroups *cg, const char *namespace, const char *name, pid_t pid,
                const VmResources *res, GTask *task);
  char *(*place_sync)(VmletCgroups *cg, const char *namespace, const char *name, pid_t pid,
                      const VmResources *res, GError **error);
  /* Sets the CPU weight and quota; the task returns a boolean. */
  void (*update_cpu)(VmletCgroups *cg, const char *location, const VmResources *res,
                     GTask *task);
  gboolean (*read)(VmletCgroups *cg, const char *location, VmResources *out, GError **error);
  GArray *(*pids)(VmletCgroups *cg, const char *location, GError **error);
  void (*remove)(VmletCgroups *cg, const char *location);
  char *(*describe)(VmletCgroups *cg, const char *location);
  void (*free)(gpointer backend);
} VmletCgroupOps;

struct _VmletCgroups {
  gint refs; /* the owner's, and one per placement running in a worker thread */
  VmletCgroupManagerKind kind;
  const VmletCgroupOps *ops;
  gpointer backend; /* the backend's own state */
};

extern const VmletCgroupOps vmlet_cgroup_v1_ops;
extern const VmletCgroupOps vmlet_cgroup_v2_ops;
extern const VmletCgroupOps vmlet_cgroup_systemd_ops;
extern const VmletCgroupOps vmlet_cgroup_none_ops;

gpointer vmlet_cgroup_v1_new(const char *root, const char *parent, GError **error);
gpointer vmlet_cgroup_v2_new(const char *root, const char *parent, GError **error);
gpointer vmlet_cgroup_systemd_new(const char *slice, GError **error);

/* ---- helpers shared by the cgroupfs backends (cgroup-fs.c) ---- */

/* The leaf directory name of a VM: "<namespace>.<name>" (no dots in either). */
char *vmlet_cgroup_leaf(const char *namespace, const char *name);

/* Writes value to dir/file (no O_APPEND: one write per open, as the kernel wants). */
gboolean vmlet_cgroup_write(const char *dir, const char *file, const char *value,
                            GError **error);
gboolean vmlet_cgroup_write_u64(const char *dir, const char *file, guint64 value,
                                GError **error);
/* Reads dir/file (at most 64 KiB), trailing newline removed. */
char *vmlet_cgroup_read(const char *dir, const char *file, GError **error);
/* Parses a single unsigned number, or "max" as G_MAXUINT64. */
gboolean vmlet_cgroup_read_u64(const char *dir, const char *file, guint64 *out,
                               GError **error);
/* The pids listed in dir/cgroup.procs. */
GArray *vmlet_cgroup_read_pids(const char *dir, GError **error);

/* mkdir -p below root, each new directory 0755 (cgroupfs ignores the mode bits). */
gboolean vmlet_cgroup_mkdirs(const char *path, GError **error);

/* This process's own cgroup path in the hierarchy whose /proc/self/cgroup line names
 * controller ("" for the v2 line "0::/path"). */
char *vmlet_cgroup_self_path(const char *controller, GError **error);

/* The parent setting resolved against own: "/machine" stays, "vmlet" becomes
 * own + "/vmlet". */
char *vmlet_cgroup_resolve_parent(const char *parent, const char *own);

/* Completes task with a location or an error, and drops the caller's reference. */
void vmlet_cgroup_task_return_location(GTask *task, char *location, GError *error);
