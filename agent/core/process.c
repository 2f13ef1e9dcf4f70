#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "vmlet-error.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

gboolean vmlet_proc_start_time(pid_t pid, guint64 *out)
{
  g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
  g_autofree char *data = NULL;
  if (!vmlet_read_file_bounded(path, 4096, &data, NULL, NULL))
    return FALSE;
  /* Field 2 (comm) may contain spaces and parentheses: fields resume after the last ')'. */
  const char *p = strrchr(data, ')');
  if (!p)
    return FALSE;
  p++;
  /* After ')' come fields 3, 4, ...; start time is field 22. */
  for (int field = 3; field < 22; field++) {
    p = strchr(p + 1, ' ');
    if (!p)
      return FALSE;
  }
  char *end = NULL;
  guint64 v = g_ascii_strtoull(p + 1, &end, 10);
  if (end == p + 1)
    return FALSE;
  *out = v;
  return TRUE;
}

static void child_setup(gpointer data)
{
  /* A session of its own: ^C on the agent's terminal or a signal to its process group
   * must not reach the VMs. Runs between fork and exec: async-signal-safe calls only. */
  setsid();
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
}

gboolean vmlet_proc_spawn(const char *const *argv, int log_fd, VmletProcId *out, GError **error)
{
  static const char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                     NULL};
  vmlet_autofd devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "/dev/null: %s", g_strerror(errno));
    return FALSE;
  }
  GPid pid = 0;
  /* Not G_SPAWN_LEAVE_DESCRIPTORS_OPEN: GLib closes every fd but 0, 1 and 2 in the child. */
  if (!g_spawn_async_with_pipes_and_fds(NULL, argv, envp,
                                        G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_CLOEXEC_PIPES,
                                        child_setup, NULL, devnull, log_fd, log_fd, NULL, NULL,
                                        0, &pid, NULL, NULL, NULL, error)) {
    g_prefix_error(error, "starting %s: ", argv[0]);
    return FALSE;
  }
  VmletProcId id = {.pid = pid};
  if (!vmlet_proc_start_time(pid, &id.start_time)) {
    /* It exited already; its start time is gone with it. Report it as started: the
     * caller's watch sees the exit at once and reaps it. */
    id.start_time = 0;
  }
  *out = id;
  return TRUE;
}

int vmlet_proc_open(const VmletProcId *id, GError **error)
{
  int fd = (int)syscall(SYS_pidfd_open, id->pid, 0);
  if (fd < 0) {
    int e = errno;
    g_set_error(error, VMLET_ERROR, e == ESRCH ? VMLET_ERROR_NOT_FOUND : VMLET_ERROR_IO,
                "process %d: %s", (int)id->pid, e == ESRCH ? "has exited" : g_strerror(e));
    return -1;
  }
  /* Checked after opening: the pidfd pins this process, so the comparison cannot race
   * with the pid being reused in between. */
  guint64 start = 0;
  if (!vmlet_proc_start_time(id->pid, &start) || start != id->start_time) {
    close(fd);
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
                "process %d: has exited (the pid now belongs to another process)",
                (int)id->pid);
    return -1;
  }
  return fd;
}

gboolean vmlet_proc_reap(int pidfd, int *out_status)
{
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG) < 0)
    return FALSE; /* ECHILD: not our child */
  if (info.si_pid == 0)
    return FALSE;
  if (out_status) {
    switch (info.si_code) {
    case CLD_EXITED:
      *out_status = W_EXITCODE(info.si_status, 0);
      break;
    default:
      *out_status = W_EXITCODE(0, info.si_status);
      break;
    }
  }
  return TRUE;
}
