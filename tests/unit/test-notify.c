/* The sd_notify protocol without libsystemd, received by real AF_UNIX datagram sockets
 * (a path in a temporary directory and an abstract name), as systemd's manager receives
 * it. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "fileio.h"
#include "notify.h"
#include "vmlet-error.h"

static int bind_dgram(const struct sockaddr_un *addr, socklen_t len)
{
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(bind(fd, (const struct sockaddr *)addr, len), ==, 0);
  return fd;
}

static int bind_path(const char *path)
{
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  g_assert_cmpuint(strlen(path), <, sizeof(addr.sun_path));
  strcpy(addr.sun_path, path);
  return bind_dgram(&addr, sizeof(addr));
}

/* name without the leading '@' */
static int bind_abstract(const char *name)
{
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  gsize len = strlen(name);
  g_assert_cmpuint(len + 1, <=, sizeof(addr.sun_path));
  memcpy(addr.sun_path + 1, name, len);
  return bind_dgram(&addr, (socklen_t)(G_STRUCT_OFFSET(struct sockaddr_un, sun_path) + 1 + len));
}

/* The next queued datagram, or NULL when there is none. A unix datagram is queued at the
 * receiver before sendto() returns, so no waiting is needed. */
static char *next_datagram(int fd)
{
  char buf[2 * VMLET_NOTIFY_MAX_STATE];
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n < 0) {
    g_assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return NULL;
  }
  return g_strndup(buf, (gsize)n);
}

static void assert_next(int fd, const char *expected)
{
  g_autofree char *got = next_datagram(fd);
  g_assert_cmpstr(got, ==, expected);
}

static void assert_nothing_queued(int fd)
{
  g_autofree char *got = next_datagram(fd);
  g_assert_null(got);
}

typedef struct {
  char *dir;
  char *path;
} TmpSocket;

static void tmp_socket_clear(TmpSocket *t)
{
  if (t->path)
    g_unlink(t->path);
  if (t->dir)
    g_rmdir(t->dir);
  g_free(t->path);
  g_free(t->dir);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TmpSocket, tmp_socket_clear)

static void tmp_socket_init(TmpSocket *t)
{
  t->dir = g_dir_make_tmp("vmlet-notify-XXXXXX", NULL);
  g_assert_nonnull(t->dir);
  t->path = g_build_filename(t->dir, "notify", NULL);
}

static void clean_env(void)
{
  g_unsetenv("NOTIFY_SOCKET");
  g_unsetenv("WATCHDOG_USEC");
  g_unsetenv("WATCHDOG_PID");
}

static void test_path_socket(void)
{
  g_auto(TmpSocket) t = {0};
  tmp_socket_init(&t);
  vmlet_autofd fd = bind_path(t.path);
  g_setenv("NOTIFY_SOCKET", t.path, TRUE);
  g_autoptr(GError) error = NULL;

  g_assert_true(vmlet_notify_ready(&error));
  g_assert_no_error(error);
  assert_next(fd, "READY=1");

  g_assert_true(vmlet_notify_status(&error, "%d VMs: %d Running, %d Stopped", 3, 2, 1));
  g_assert_no_error(error);
  assert_next(fd, "STATUS=3 VMs: 2 Running, 1 Stopped");

  g_assert_true(vmlet_notify_stopping(&error));
  assert_next(fd, "STOPPING=1");

  /* Several assignments in one message, as sd_notify(3) allows. */
  g_assert_true(vmlet_notify("RELOADING=1\nSTATUS=reloading", &error));
  g_assert_no_error(error);
  assert_next(fd, "RELOADING=1\nSTATUS=reloading");
  assert_nothing_queued(fd);
  clean_env();
}

static void test_abstract_socket(void)
{
  g_autofree char *name = g_strdup_printf("vmlet-test-notify-%d-%08x", (int)getpid(),
                                          g_random_int());
  vmlet_autofd fd = bind_abstract(name);
  g_autofree char *env = g_strconcat("@", name, NULL);
  g_setenv("NOTIFY_SOCKET", env, TRUE);
  g_autoptr(GError) error = NULL;

  g_assert_true(vmlet_notify_ready(&error));
  g_assert_no_error(error);
  assert_next(fd, "READY=1");
  g_assert_true(vmlet_notify_status(&error, "1 VM: 1 Running"));
  assert_next(fd, "STATUS=1 VM: 1 Running");
  g_assert_true(vmlet_notify_stopping(&error));
  assert_next(fd, "STOPPING=1");
  assert_nothing_queued(fd);
  clean_env();
}

static void test_unset_is_noop(void)
{
  g_auto(TmpSocket) t = {0};
  tmp_socket_init(&t);
  vmlet_autofd fd = bind_path(t.path);
  clean_env();
  g_autoptr(GError) error = NULL;

  g_assert_true(vmlet_notify_ready(&error));
  g_assert_true(vmlet_notify_status(&error, "idle"));
  g_assert_true(vmlet_notify_stopping(&error));
  g_assert_no_error(error);
  /* Empty is unset too: systemd never sets it so, and there is nowhere to send. */
  g_setenv("NOTIFY_SOCKET", "", TRUE);
  g_assert_true(vmlet_notify_ready(&error));
  g_assert_no_error(error);
  assert_nothing_queued(fd);
  clean_env();
}

static void test_bounds(void)
{
  g_auto(TmpSocket) t = {0};
  tmp_socket_init(&t);
  vmlet_autofd fd = bind_path(t.path);
  g_setenv("NOTIFY_SOCKET", t.path, TRUE);

  /* Exactly the bound arrives whole. */
  g_autofree char *max = g_strnfill(VMLET_NOTIFY_MAX_STATE, 'A');
  memcpy(max, "STATUS=", 7);
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_notify(max, &error));
  g_assert_no_error(error);
  assert_next(fd, max);

  /* One byte more is refused, and nothing is sent. */
  g_autofree char *over = g_strnfill(VMLET_NOTIFY_MAX_STATE + 1, 'A');
  memcpy(over, "STATUS=", 7);
  g_assert_false(vmlet_notify(over, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
  g_clear_error(&error);

  g_assert_false(vmlet_notify_status(&error, "%s", over + 7));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
  g_clear_error(&error);

  /* A status fitting exactly: "STATUS=" + 4089 bytes. */
  g_autofree char *text = g_strnfill(VMLET_NOTIFY_MAX_STATE - 7, 'b');
  g_assert_true(vmlet_notify_status(&error, "%s", text));
  g_assert_no_error(error);
  g_autofree char *expected = g_strconcat("STATUS=", text, NULL);
  assert_next(fd, expected);

  /* A newline would smuggle in another assignment. */
  g_assert_false(vmlet_notify_status(&error, "ok\nREADY=1"));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_clear_error(&error);

  g_assert_false(vmlet_notify("", &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_clear_error(&error);
  assert_nothing_queued(fd);

  /* Refused before the environment is looked at. */
  clean_env();
  g_assert_false(vmlet_notify(over, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
  g_clear_error(&error);
}

static void test_bad_addresses(void)
{
  g_autoptr(GError) error = NULL;

  g_setenv("NOTIFY_SOCKET", "run/notify", TRUE);
  g_assert_false(vmlet_notify_ready(&error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_clear_error(&error);

  g_setenv("NOTIFY_SOCKET", "vsock:2:1234", TRUE);
  g_assert_false(vmlet_notify_ready(&error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_clear_error(&error);

  g_setenv("NOTIFY_SOCKET", "@", TRUE);
  g_assert_false(vmlet_notify_ready(&error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_clear_error(&error);

  g_autofree char *fill = g_strnfill(200, 'x');
  g_autofree char *long_path = g_strconcat("/tmp/", fill, NULL);
  g_setenv("NOTIFY_SOCKET", long_path, TRUE);
  g_assert_false(vmlet_notify_ready(&error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
  g_clear_error(&error);

  /* Nobody listening: the error names the socket and the reason. */
  g_auto(TmpSocket) t = {0};
  tmp_socket_init(&t);
  g_setenv("NOTIFY_SOCKET", t.path, TRUE);
  g_assert_false(vmlet_notify_ready(&error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_IO);
  g_assert_nonnull(strstr(error->message, t.path));
  g_clear_error(&error);
  clean_env();
}

typedef struct {
  gint64 start;
  GArray *arrivals; /* gint64 µs since start, one per WATCHDOG=1 */
  GMainLoop *loop;
  guint want;
  guint deadline; /* 0 once fired */
} Pings;

static gboolean on_datagram(int fd, GIOCondition cond, gpointer data)
{
  Pings *p = data;
  g_autofree char *got = NULL;
  while ((got = next_datagram(fd))) {
    g_assert_cmpstr(got, ==, "WATCHDOG=1");
    gint64 at = g_get_monotonic_time() - p->start;
    g_array_append_val(p->arrivals, at);
    g_clear_pointer(&got, g_free);
  }
  if (p->want > 0 && p->arrivals->len >= p->want)
    g_main_loop_quit(p->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean on_deadline(gpointer data)
{
  Pings *p = data;
  p->deadline = 0;
  g_main_loop_quit(p->loop);
  return G_SOURCE_REMOVE;
}

/* Runs the default loop until want pings arrived or timeout_ms passed. */
static GArray *collect_pings(int fd, guint want, guint timeout_ms, gint64 start)
{
  Pings p = {
      .start = start,
      .arrivals = g_array_new(FALSE, FALSE, sizeof(gint64)),
      .loop = g_main_loop_new(NULL, FALSE),
      .want = want,
  };
  guint watch = g_unix_fd_add(fd, G_IO_IN, on_datagram, &p);
  p.deadline = g_timeout_add(timeout_ms, on_deadline, &p);
  g_main_loop_run(p.loop);
  g_source_remove(watch);
  if (p.deadline)
    g_source_remove(p.deadline);
  g_main_loop_unref(p.loop);
  return p.arrivals;
}

static void test_watchdog_pings(void)
{
  g_auto(TmpSocket) t = {0};
  tmp_socket_init(&t);
  vmlet_autofd fd = bind_path(t.path);
  g_setenv("NOTIFY_SOCKET", t.path, TRUE);
  g_setenv("WATCHDOG_USEC", "200000", TRUE);
  g_autofree char *pid = g_strdup_printf("%d", (int)getpid());
  g_setenv("WATCHDOG_PID", pid, TRUE); /* our own pid: pings */

  gint64 start = g_get_monotonic_time();
  guint id = vmlet_watchdog_start();
  g_assert_cmpuint(id, !=, 0);
  g_autoptr(GArray) at = collect_pings(fd, 5, 10000, start);
  g_source_remove(id);
  g_assert_cmpuint(at->len, ==, 5);

  /* Every half of 200 ms. GLib never fires a timeout early, so no gap is shorter than
   * 100 ms (less the jitter of receiving here: 90); a loaded machine (the suite runs QEMU
   * alongside) may fire late, so the period shows in the shortest gap, which must be
   * nowhere near the full 200 ms. */
  gint64 prev = 0, shortest = G_MAXINT64;
  for (guint i = 0; i < at->len; i++) {
    gint64 gap = g_array_index(at, gint64, i) - prev;
    g_assert_cmpint(gap, >=, 90 * 1000);
    shortest = MIN(shortest, gap);
    prev = g_array_index(at, gint64, i);
  }
  g_assert_cmpint(shortest, <, 150 * 1000);
  /* Removed: no more pings. */
  g_autoptr(GArray) after = collect_pings(fd, 0, 250, g_get_monotonic_time());
  g_assert_cmpuint(after->len, ==, 0);
  assert_nothing_queued(fd);
  clean_env();
}

static void test_watchdog_absent(void)
{
  g_auto(TmpSocket) t = {0};
  tmp_socket_init(&t);
  vmlet_autofd fd = bind_path(t.path);
  g_setenv("NOTIFY_SOCKET", t.path, TRUE);

  /* WatchdogSec= set for another process (the manager moved WATCHDOG_PID, or a child
   * inherited the environment): not ours to ping. */
  g_setenv("WATCHDOG_USEC", "200000", TRUE);
  g_autofree char *other = g_strdup_printf("%d", (int)getpid() + 1);
  g_setenv("WATCHDOG_PID", other, TRUE);
  g_assert_cmpuint(vmlet_watchdog_start(), ==, 0);
  g_autoptr(GArray) at = collect_pings(fd, 0, 300, g_get_monotonic_time());
  g_assert_cmpuint(at->len, ==, 0);

  const char *bad_pids[] = {"0", "-1", "abc", "", "99999999999"};
  for (guint i = 0; i < G_N_ELEMENTS(bad_pids); i++) {
    g_setenv("WATCHDOG_PID", bad_pids[i], TRUE);
    g_assert_cmpuint(vmlet_watchdog_start(), ==, 0);
  }
  g_unsetenv("WATCHDOG_PID");

  const char *bad_usecs[] = {"0", "", "-200000", "2e5", "200000 ", "18446744073709551616"};
  for (guint i = 0; i < G_N_ELEMENTS(bad_usecs); i++) {
    g_setenv("WATCHDOG_USEC", bad_usecs[i], TRUE);
    g_assert_cmpuint(vmlet_watchdog_start(), ==, 0);
  }
  g_unsetenv("WATCHDOG_USEC");
  g_assert_cmpuint(vmlet_watchdog_start(), ==, 0);
  assert_nothing_queued(fd);
  clean_env();
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  clean_env();
  g_test_add_func("/notify/path-socket", test_path_socket);
  g_test_add_func("/notify/abstract-socket", test_abstract_socket);
  g_test_add_func("/notify/unset-is-noop", test_unset_is_noop);
  g_test_add_func("/notify/bounds", test_bounds);
  g_test_add_func("/notify/bad-addresses", test_bad_addresses);
  g_test_add_func("/notify/watchdog-pings", test_watchdog_pings);
  g_test_add_func("/notify/watchdog-absent", test_watchdog_absent);
  return g_test_run();
}
