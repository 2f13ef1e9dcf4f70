#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fileio.h"
#include "vmlet-error.h"

/* $NOTIFY_SOCKET as a socket address: "/path" or "@abstract" (sd_notify(3)). Other forms
 * that newer systemd understands (vsock:) are refused, not guessed at. */
static gboolean notify_address(const char *value, struct sockaddr_un *out_addr,
                               socklen_t *out_len, GError **error)
{
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  gsize len = strnlen(value, sizeof(addr.sun_path) + 1);
  gboolean abstract = value[0] == '@';

  if (value[0] != '/' && !abstract) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "NOTIFY_SOCKET: expected an absolute path or @name, found \"%.64s\"", value);
    return FALSE;
  }
  if (len < 2) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "NOTIFY_SOCKET: empty socket name");
    return FALSE;
  }
  /* A path needs its terminating NUL inside sun_path; an abstract name does not have one. */
  if (len > sizeof(addr.sun_path) || (!abstract && len == sizeof(addr.sun_path))) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                "NOTIFY_SOCKET: longer than the %zu bytes of a unix socket address",
                sizeof(addr.sun_path) - 1);
    return FALSE;
  }
  memcpy(addr.sun_path, value, len);
  if (abstract)
    addr.sun_path[0] = '\0';
  *out_addr = addr;
  *out_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (abstract ? 0 : 1));
  return TRUE;
}

gboolean vmlet_notify(const char *state, GError **error)
{
  g_return_val_if_fail(state != NULL, FALSE);

  /* Checked before looking at the environment, so a bad state fails the same way under
   * systemd and in a terminal. */
  gsize len = strnlen(state, VMLET_NOTIFY_MAX_STATE + 1);
  if (len > VMLET_NOTIFY_MAX_STATE) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                "notification longer than %d bytes", VMLET_NOTIFY_MAX_STATE);
    return FALSE;
  }
  if (len == 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "empty notification");
    return FALSE;
  }

  const char *where = g_getenv("NOTIFY_SOCKET");
  if (!where || !*where)
    return TRUE;

  struct sockaddr_un addr;
  socklen_t addr_len;
  if (!notify_address(where, &addr, &addr_len, error))
    return FALSE;

  vmlet_autofd fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "notify socket: %s", g_strerror(errno));
    return FALSE;
  }
  /* Blocking, as libsystemd's sd_notify: the manager drains its queue promptly, and a
   * READY=1 dropped on a full queue would fail the unit's start. */
  ssize_t n;
  do
    n = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *)&addr, addr_len);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "sending to NOTIFY_SOCKET %s: %s", where,
                g_strerror(errno));
    return FALSE;
  }
  if ((gsize)n != len) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "sending to NOTIFY_SOCKET %s: short write",
                where);
    return FALSE;
  }
  return TRUE;
}

gboolean vmlet_notify_ready(GError **error)
{
  return vmlet_notify("READY=1", error);
}

gboolean vmlet_notify_stopping(GError **error)
{
  return vmlet_notify("STOPPING=1", error);
}

gboolean vmlet_notify_status(GError **error, const char *fmt, ...)
{
  static const char prefix[] = "STATUS=";
  const gsize prefix_len = sizeof(prefix) - 1;
  /* One byte more than the bound, so an over-long text is detected rather than cut. */
  char buf[VMLET_NOTIFY_MAX_STATE + 1];

  memcpy(buf, prefix, prefix_len);
  va_list ap;
  va_start(ap, fmt);
  int n = g_vsnprintf(buf + prefix_len, sizeof(buf) - prefix_len, fmt, ap);
  va_end(ap);
  if (n < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "status: formatting failed");
    return FALSE;
  }
  if (prefix_len + (gsize)n > VMLET_NOTIFY_MAX_STATE) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                "status of %d bytes: a notification holds at most %d", n,
                VMLET_NOTIFY_MAX_STATE);
    return FALSE;
  }
  if (strchr(buf + prefix_len, '\n')) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "status must be one line: a newline would start another assignment");
    return FALSE;
  }
  return vmlet_notify(buf, error);
}

static gboolean watchdog_ping(gpointer data)
{
  /* Not reported: a ping fails only when the manager's socket is gone, and then there is no
   * one to ping; if systemd is still waiting, its own watchdog timeout is the report. */
  (void)vmlet_notify("WATCHDOG=1", NULL);
  return G_SOURCE_CONTINUE;
}

guint vmlet_watchdog_start(void)
{
  const char *usec_text = g_getenv("WATCHDOG_USEC");
  guint64 usec = 0;
  if (!usec_text || !g_ascii_string_to_unsigned(usec_text, 10, 1, G_MAXUINT64, &usec, NULL))
    return 0;

  /* WATCHDOG_PID names the process systemd watches; a child that inherited the
   * environment (or a helper started by the agent) must not ping on its behalf. */
  const char *pid_text = g_getenv("WATCHDOG_PID");
  if (pid_text) {
    guint64 pid = 0;
    if (!g_ascii_string_to_unsigned(pid_text, 10, 1, G_MAXINT32, &pid, NULL) ||
        (pid_t)pid != getpid())
      return 0;
  }

  /* Half the interval (sd_watchdog_enabled(3)), in GLib's milliseconds: at least 1 so a
   * tiny interval does not become a busy loop, at most what a guint holds. */
  guint64 ms = usec / 2 / 1000;
  ms = CLAMP(ms, 1, G_MAXUINT);
  return g_timeout_add((guint)ms, watchdog_ping, NULL);
}
