/* One QEMU process of a VM (libvirt's qemuProcess, kept small): spawned and held at a
 * gate before exec until it is in its cgroup, or adopted from the VM's record after a
 * restart of vmletd; watched through a pidfd; reached through its typed monitor once QMP
 * answers; stopped with `quit` and, if that does not end it, SIGKILL; reaped.
 *
 * It knows nothing of phases, run policies or operations: it says when QEMU is placed and
 * when its monitor is ready, and once, at the end, why QEMU exited. A VM holds one, or two
 * while it migrates (the outgoing and the incoming QEMU).
 *
 * Signals:
 *   "placed" (const char *location)  QEMU is in its cgroup and about to exec (save it)
 *   "ready"  ()                      the monitor is connected (vmlet_instance_get_monitor)
 *   "exited" (gint VmletExitCause, const char *how)  once; the pidfd is closed, the
 *            cgroup removed, the monitor closed. how: "exit status 1", "killed by signal 9
 *            (Killed)", why it could not be placed, why QMP never answered. */
#pragma once

#include <glib-object.h>

#include "cgroup.h"
#include "confine.h"
#include "monitor.h"
#include "process.h"
#include "resources.h"

/* QEMU creates its QMP socket within ~65 ms of exec here; 10 s covers a loaded host. */
#define VMLET_QMP_CONNECT_TIMEOUT_MS 10000
/* After `quit`, how long QEMU gets to flush and close its images before SIGKILL. */
#define VMLET_QUIT_TIMEOUT_S 10

typedef enum {
  VMLET_EXIT_STATUS,     /* vmlet's child: how is its wait status */
  VMLET_EXIT_UNKNOWN,    /* adopted after a restart of vmletd: not its child, the status is
                          * unknowable */
  VMLET_EXIT_NOT_PLACED, /* never ran: it could not be placed in its cgroup and was let go
                          * at its gate */
  VMLET_EXIT_NO_MONITOR, /* QMP never answered, or hung up while QEMU went on running (1 s
                          * is left for an exit to show first): vmlet stopped it */
} VmletExitCause;

#define VMLET_TYPE_INSTANCE (vmlet_instance_get_type())
G_DECLARE_FINAL_TYPE(VmletInstance, vmlet_instance, VMLET, INSTANCE, GObject)

typedef struct {
  const char *const *argv;
  int log_fd;                  /* QEMU's stdout and stderr */
  const VmletConfine *confine; /* its user, capabilities and seccomp filter */
  VmletCgroups *cgroups;       /* borrowed; outlives the instance */
  const char *namespace, *name;
  const VmResources *resources;
  const char *qmp_socket;
} VmletInstanceSpawn;

/* Spawns QEMU held at its gate and starts placing it; it execs once placed, and the
 * monitor is connected after that. NULL with an error when QEMU could not be spawned, or
 * with VMLET_ERROR_NOT_FOUND when it was gone before it could be watched. */
VmletInstance *vmlet_instance_spawn(const VmletInstanceSpawn *how, GError **error);

/* Takes over a QEMU a previous vmletd started: checks pid and start time, watches it,
 * connects its monitor. NULL (VMLET_ERROR_NOT_FOUND) when that process is gone. */
VmletInstance *vmlet_instance_adopt(const VmletProcId *id, const char *qmp_socket,
                                    VmletCgroups *cgroups, const char *cgroup, GError **error);

const VmletProcId *vmlet_instance_get_id(VmletInstance *inst);
/* NULL until "ready", and again once QEMU exited. */
VmletMonitor *vmlet_instance_get_monitor(VmletInstance *inst);
/* Where it was placed (cgroup.h location), NULL until "placed". */
const char *vmlet_instance_get_cgroup(VmletInstance *inst);
/* Cancelled when QEMU exits: for commands the caller sends to this QEMU. */
GCancellable *vmlet_instance_get_cancellable(VmletInstance *inst);
gboolean vmlet_instance_is_child(VmletInstance *inst);
gboolean vmlet_instance_has_exited(VmletInstance *inst);

/* `quit` over QMP (SIGTERM while there is no monitor), then SIGKILL after
 * VMLET_QUIT_TIMEOUT_S. Repeated calls change nothing. */
void vmlet_instance_quit(VmletInstance *inst);
