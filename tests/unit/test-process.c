/* Spawning, re-adopting and watching processes; atomic file replacement. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "fileio.h"
#include "process.h"
#include "vmlet-error.h"

static char *tmpdir(void)
{
  return g_dir_make_tmp("vmlet-proc-XXXXXX", NULL);
}

static void rm_rf(const char *dir)
{
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
  g_assert_cmpint(system(cmd), ==, 0);
}

static void test_atomic_write(void)
{
  g_autofree char *dir = tmpdir();
  g_autofree char *path = g_build_filename(dir, "state.json", NULL);
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_write_file_atomic(path, "{\"a\": 1}\n", 9, 0600, &error));
  g_assert_no_error(error);
  g_assert_true(vmlet_write_file_atomic(path, "{\"a\": 2}\n", 9, 0600, &error));
  g_autofree char *data = NULL;
  g_assert_true(g_file_get_contents(path, &data, NULL, NULL));
  g_assert_cmpstr(data, ==, "{\"a\": 2}\n");
  struct stat st;
  g_assert_cmpint(stat(path, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 07777, ==, 0600); /* not widened by the umask or a default */

  /* No temporary files are left behind. */
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *name;
  int n = 0;
  while ((name = g_dir_read_name(d)))
    n++;
  g_assert_cmpint(n, ==, 1);

  /* Failure leaves the old content: a path whose directory does not exist. */
  g_autofree char *bad = g_build_filename(dir, "missing", "state.json", NULL);
  g_assert_false(vmlet_write_file_atomic(bad, "x", 1, 0600, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_IO);
  g_assert_nonnull(strstr(error->message, bad));
  rm_rf(dir);
}

static gboolean on_exit_fd(gint fd, GIOCondition cond, gpointer data)
{
  *(gboolean *)data = TRUE;
  return G_SOURCE_REMOVE;
}

static void test_spawn_clean_child(void)
{
  g_autofree char *dir = tmpdir();
  g_autofree char *log = g_build_filename(dir, "log", NULL);
  vmlet_autofd logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  /* An fd the child must not inherit, even though it is not CLOEXEC. */
  int leak = open("/dev/null", O_RDONLY);
  g_assert_cmpint(leak, >=, 0);
  const char *argv[] = {"/bin/sh", "-c",
                        "env; echo FDS $(ls /proc/self/fd | tr '\\n' ' '); "
                        "echo SID $(ps -o sid= -p $$) PID $$; exit 7", NULL};
  VmletProcId id;
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_proc_spawn(argv, logfd, NULL, &id, NULL, &error));
  g_assert_no_error(error);
  close(leak);

  int pidfd = vmlet_proc_open(&id, &error);
  if (pidfd < 0) {
    /* The shell may exit before we open it; then only reaping by pid is left. */
    g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
    int st = 0;
    g_assert_cmpint(waitpid(id.pid, &st, 0), ==, id.pid);
    g_assert_cmpint(WEXITSTATUS(st), ==, 7);
  } else {
    gboolean exited = FALSE;
    g_unix_fd_add(pidfd, G_IO_IN, on_exit_fd, &exited);
    while (!exited)
      g_main_context_iteration(NULL, TRUE);
    int status = -1;
    g_assert_true(vmlet_proc_reap(pidfd, &status));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 7);
    close(pidfd);
  }
  g_autofree char *out = NULL;
  g_assert_true(g_file_get_contents(log, &out, NULL, NULL));
  g_test_message("%s", out);
  /* Environment: PATH only (the shell itself adds PWD/SHLVL/_ — nothing of ours). */
  g_assert_nonnull(strstr(out, "PATH=/usr/local/sbin:"));
  g_assert_null(strstr(out, "HOME="));
  g_assert_null(strstr(out, "G_DEBUG"));
  /* fds: 0, 1, 2 and the one ls itself opens to list them. */
  g_assert_nonnull(strstr(out, "FDS 0 1 2 3\n"));
  /* A session of its own: sid == its pid. */
  g_autofree char *want = g_strdup_printf("SID %d PID %d", (int)id.pid, (int)id.pid);
  g_assert_nonnull(strstr(out, want));
  rm_rf(dir);
}

static void test_adopt_real_qemu(void)
{
  g_autofree char *bin = g_find_program_in_path("qemu-system-x86_64");
  if (!bin) {
    g_test_skip("qemu-system-x86_64 is not installed");
    return;
  }
  g_autofree char *dir = tmpdir();
  g_autofree char *log = g_build_filename(dir, "qemu.log", NULL);
  vmlet_autofd logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const char *argv[] = {bin, "-machine", "q35", "-accel", "tcg", "-m", "64", "-S", "-nodefaults",
                        "-display", "none", NULL};
  VmletProcId id;
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_proc_spawn(argv, logfd, NULL, &id, NULL, &error));
  g_assert_cmpuint(id.start_time, >, 0);

  /* As a restarted agent would: only the recorded pid and start time. */
  VmletProcId recorded = id;
  int pidfd = vmlet_proc_open(&recorded, &error);
  g_assert_no_error(error);
  g_assert_cmpint(pidfd, >=, 0);

  /* The same pid with another start time is another process: refused. */
  VmletProcId reused = {.pid = id.pid, .start_time = id.start_time + 1};
  g_assert_cmpint(vmlet_proc_open(&reused, &error), ==, -1);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
  g_clear_error(&error);

  gboolean exited = FALSE;
  g_unix_fd_add(pidfd, G_IO_IN, on_exit_fd, &exited);
  kill(id.pid, SIGTERM);
  while (!exited)
    g_main_context_iteration(NULL, TRUE);
  int status = 0;
  g_assert_true(vmlet_proc_reap(pidfd, &status));
  close(pidfd);

  /* Gone: opening it again says so. */
  g_assert_cmpint(vmlet_proc_open(&recorded, &error), ==, -1);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
  rm_rf(dir);
}

static void test_start_time_parsing(void)
{
  guint64 mine = 0, again = 0;
  g_assert_true(vmlet_proc_start_time(getpid(), &mine));
  g_assert_true(vmlet_proc_start_time(getpid(), &again));
  g_assert_cmpuint(mine, >, 0);
  g_assert_cmpuint(mine, ==, again);
  g_assert_false(vmlet_proc_start_time(-1, &mine));
  /* A process whose name has spaces and parentheses does not confuse the parser. */
  g_autofree char *dir = tmpdir();
  g_autofree char *odd = g_build_filename(dir, "we ird) (name", NULL);
  g_assert_cmpint(symlink("/bin/sleep", odd), ==, 0);
  const char *argv[] = {odd, "5", NULL};
  VmletProcId id;
  vmlet_autofd logfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  g_assert_true(vmlet_proc_spawn(argv, logfd, NULL, &id, NULL, NULL));
  guint64 st = 0;
  g_assert_true(vmlet_proc_start_time(id.pid, &st));
  g_assert_cmpuint(st, ==, id.start_time);
  g_assert_cmpuint(st, >=, mine);
  kill(id.pid, SIGKILL);
  waitpid(id.pid, NULL, 0);
  rm_rf(dir);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/fileio/atomic-write", test_atomic_write);
  g_test_add_func("/process/spawn-clean-child", test_spawn_clean_child);
  g_test_add_func("/process/adopt-real-qemu", test_adopt_real_qemu);
  g_test_add_func("/process/start-time-parsing", test_start_time_parsing);
  return g_test_run();
}
