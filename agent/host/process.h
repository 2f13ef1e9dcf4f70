/* QEMU processes that outlive the agent.
 *
 * A process is identified by pid and kernel start time, so a pid reused after a reboot or
 * a crash is never mistaken for the VM's QEMU. It is watched through a pidfd, which works
 * the same for a child vmlet started and for a process it re-adopts after its own restart
 * (when it is no longer the parent and cannot wait for it). */
#pragma once

#include <glib.h>
#include <sys/types.h>

typedef struct {
  pid_t pid;
  guint64 start_time; /* /proc/PID/stat field 22, clock ticks since boot */
} VmletProcId;

#include "confine.h"

typedef struct {
  /* Dropped privileges and vmlet's seccomp filter (confine.h); NULL: none. */
  const VmletConfine *confine;
  /* The child waits before exec until vmlet_proc_release(): the agent places it in its
   * cgroup first, so that QEMU never runs, allocates or spawns threads outside it. */
  gboolean gated;
} VmletSpawnOptions;

/* Starts argv[0] with argv in a new session (so signals to the agent's process group and
 * terminal never reach it), stdin from /dev/null, stdout and stderr to log_fd, no other
 * inherited file descriptors, umask 077 and an environment of only PATH. The child is not
 * reaped by GLib: the caller watches it with vmlet_proc_open and reaps it with
 * vmlet_proc_reap. With opts->gated, *gate_out receives the descriptor that releases it.
 * A child whose confinement fails writes the failing step to log_fd and exits 126; a
 * gated child whose gate is closed unreleased exits 127 without running argv[0]. */
gboolean vmlet_proc_spawn(const char *const *argv, int log_fd, const VmletSpawnOptions *opts,
                          VmletProcId *out, int *gate_out, GError **error);

/* Lets a gated child go on to exec QEMU (go) or makes it exit (!go); closes gate_fd. */
void vmlet_proc_release(int gate_fd, gboolean go);

/* Opens a pidfd for id, checking that the pid is still the same process (start time);
 * VMLET_ERROR_NOT_FOUND when it has exited or the pid now belongs to another process. */
int vmlet_proc_open(const VmletProcId *id, GError **error);

/* Reads the start time of pid; FALSE when the process does not exist. */
gboolean vmlet_proc_start_time(pid_t pid, guint64 *out);

/* Reaps an exited child through its pidfd. Returns TRUE with the wait status when the
 * process was vmlet's child; FALSE for an adopted process (exit status unknowable). */
gboolean vmlet_proc_reap(int pidfd, int *out_status);
