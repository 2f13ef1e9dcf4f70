#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/stat.h>
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

/* write(2) of a NUL-terminated string: the only output allowed between fork and exec. */
static void say(const char *s)
{
  ssize_t n = write(STDERR_FILENO, s, strlen(s));
  (void)n;
}

static void say_num(int v)
{
  char buf[16];
  int i = (int)sizeof buf;
  buf[--i] = '\0';
  unsigned u = v < 0 ? (unsigned)-v : (unsigned)v;
  do {
    buf[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u && i > 1);
  if (v < 0)
    buf[--i] = '-';
  say(buf + i);
}

static G_NORETURN void child_fail(const char *what, const char *detail, int err, int code)
{
  say("vmlet: ");
  say(what);
  if (detail) {
    say(": ");
    say(detail);
  }
  say(": errno ");
  say_num(err);
  say("\n");
  _exit(code);
}

/* The child between fork and exec: async-signal-safe calls only (the agent has threads).
 * Not g_spawn: it waits for the exec, which a gated child has not reached yet. */
static G_NORETURN void child(const char *const *argv, int devnull, int log_fd, int gate_r,
                             int gate_w, const VmletConfine *confine)
{
  static char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               NULL};
  /* A session of its own: ^C on the agent's terminal or a signal to its process group
   * must not reach the VMs. Signal dispositions and mask as a new program expects them
   * (an ignored SIGPIPE would otherwise survive exec). */
  setsid();
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  for (int sig = 1; sig < NSIG; sig++)
    sigaction(sig, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  umask(077);
  if (dup2(devnull, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
      dup2(log_fd, STDERR_FILENO) < 0)
    _exit(127);
  /* Only the agent may hold the gate's write end: an agent that dies before releasing
   * the child then makes the read below return 0 instead of blocking forever. */
  if (gate_w >= 0)
    close(gate_w);
  /* Every other inherited descriptor is closed by exec (the gate's read end included). */
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    child_fail("close_range", NULL, errno, 127);
  if (gate_r >= 0) {
    char c = 0;
    ssize_t n;
    do
      n = read(gate_r, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1 || c != 'G')
      _exit(127);
  }
  if (confine) {
    const char *step = "?";
    int r = vmlet_confine_apply(confine, &step);
    if (r < 0)
      child_fail("confining QEMU failed", step, -r, 126);
  }
  execve(argv[0], (char *const *)argv, envp);
  child_fail("exec", argv[0], errno, 127);
}

gboolean vmlet_proc_spawn(const char *const *argv, int log_fd, const VmletSpawnOptions *opts,
                          VmletProcId *out, int *gate_out, GError **error)
{
  if (!g_path_is_absolute(argv[0])) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "starting %s: expected an absolute path",
                argv[0]);
    return FALSE;
  }
  vmlet_autofd devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "/dev/null: %s", g_strerror(errno));
    return FALSE;
  }
  int gate[2] = {-1, -1};
  if (opts && opts->gated && pipe2(gate, O_CLOEXEC) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "pipe2: %s", g_strerror(errno));
    return FALSE;
  }
  pid_t pid = fork();
  if (pid == 0)
    child(argv, devnull, log_fd, gate[0], gate[1], opts ? opts->confine : NULL);
  int err = errno;
  if (gate[0] >= 0)
    close(gate[0]);
  if (pid < 0) {
    if (gate[1] >= 0)
      close(gate[1]);
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "starting %s: fork: %s", argv[0],
                g_strerror(err));
    return FALSE;
  }
  VmletProcId id = {.pid = pid};
  if (!vmlet_proc_start_time(pid, &id.start_time)) {
    /* It exited already; its start time is gone with it. Report it as started: the
     * caller's watch sees the exit at once and reaps it. */
    id.start_time = 0;
  }
  *out = id;
  if (gate_out)
    *gate_out = gate[1];
  else if (gate[1] >= 0)
    vmlet_proc_release(gate[1], TRUE);
  return TRUE;
}

void vmlet_proc_release(int gate_fd, gboolean go)
{
  if (gate_fd < 0)
    return;
  if (go) {
    ssize_t n;
    do
      n = write(gate_fd, "G", 1);
    while (n < 0 && errno == EINTR);
  }
  close(gate_fd);
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
