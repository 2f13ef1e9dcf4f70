/* Where each VM's QEMU runs and what it may use: one cgroup per VM, behind one interface
 * with three backends (crun's cgroup managers are the model):
 *
 *  - systemd: a transient scope per VM (vmlet-<namespace>-<name>.scope in machine.slice),
 *    created over sd-bus with StartTransientUnit, waiting for its JobRemoved;
 *  - cgroupfs v2: <parent>/<namespace>.<name> in the unified hierarchy;
 *  - cgroupfs v1: the same path in each of the cpu, cpuacct, memory and pids hierarchies.
 *
 * QEMU is placed while it is still vmlet's child, gated before exec (process.h), so
 * everything it ever allocates is charged to its own cgroup, and the cgroup lives on when
 * vmletd restarts. A VM's place is named by a "location" string that the VM's record
 * keeps: the scope's unit name, the v2 path, or "controller:path" pairs for v1. */
#pragma once

#include <gio/gio.h>
#include <sys/types.h>

#include "node.h"
#include "resources.h"

typedef struct _VmletCgroups VmletCgroups;

/* Chooses and prepares the backend node->cgroup_manager names (AUTO: systemd when booted
 * with systemd, else cgroup v2 when its cpu, memory and pids controllers are available,
 * else v1). Fails when the chosen backend cannot work here, saying why. */
VmletCgroups *vmlet_cgroups_new(const VmletNode *node, GError **error);
/* A cgroupfs backend on an explicit mount root (tests: a directory tree standing in for
 * /sys/fs/cgroup), with parent as in vmlet.conf. */
VmletCgroups *vmlet_cgroups_new_fs(VmletCgroupManagerKind kind, const char *root,
                                   const char *parent, GError **error);
/* Drops the owner's reference (a placement in progress keeps its own). */
void vmlet_cgroups_free(VmletCgroups *cg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletCgroups, vmlet_cgroups_free)

VmletCgroupManagerKind vmlet_cgroups_kind(VmletCgroups *cg);

/* The scope unit name of a VM: "vmlet-" + namespace + "-" + name + ".scope", with '-'
 * inside either escaped as systemd does ("\x2d"), so distinct VMs never collide. */
char *vmlet_cgroups_unit_name(const char *namespace, const char *name);

/* Creates the VM's cgroup with res and moves pid into it. Completes with the location. */
void vmlet_cgroups_place_async(VmletCgroups *cg, const char *namespace, const char *name,
                               pid_t pid, const VmResources *res, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
char *vmlet_cgroups_place_finish(VmletCgroups *cg, GAsyncResult *result, GError **error);

/* Applies new CPU limits to a running VM's cgroup (a live coreFraction change). */
void vmlet_cgroups_update_cpu_async(VmletCgroups *cg, const char *location,
                                    const VmResources *res, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_cgroups_update_cpu_finish(VmletCgroups *cg, GAsyncResult *result,
                                         GError **error);

/* Reads back what the cgroup holds: the CPU weight in the backend's own unit (cpu_shares
 * for v1, cpu_weight otherwise), quota, period, memory and pids limits. Blocking (for
 * status and tests, never on a hot path). */
gboolean vmlet_cgroups_read(VmletCgroups *cg, const char *location, VmResources *out,
                            GError **error);
/* The pids in the VM's cgroup. */
GArray *vmlet_cgroups_pids(VmletCgroups *cg, const char *location, GError **error);

/* Removes the cgroup of a VM whose QEMU has exited. cgroupfs: rmdir (best effort: a
 * group still busy is left for the next start to reuse); systemd: nothing, the scope ends
 * by itself when its last process has gone. */
void vmlet_cgroups_remove(VmletCgroups *cg, const char *location);

/* A line for `vmlet describe`: the backend and where the VM's cgroup is, e.g.
 * "systemd scope vmlet-default-linux\x2dvm.scope (machine.slice)". */
char *vmlet_cgroups_describe(VmletCgroups *cg, const char *location);
