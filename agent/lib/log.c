#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fileio.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Most messages are short: they are formatted on the stack, and only a longer one costs a
 * heap buffer of the full bound. */
#define SHORT_MESSAGE 1024

static const char *const level_names[] = {
    [LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static int clamp_priority(int priority)
{
  return CLAMP(priority, LOG_ERR, LOG_DEBUG);
}

/* Cuts s (length len, known to exceed max) to at most max bytes without splitting a UTF-8
 * sequence, and returns the new length. */
static gsize cut_utf8(const char *s, gsize len, gsize max)
{
  gsize cut = MIN(len, max);
  while (cut > 0 && ((guchar)s[cut] & 0xC0) == 0x80)
    cut--;
  return cut;
}

/* One field of the native protocol. A value holding a newline cannot use the KEY=VALUE
 * line form; it takes the binary-safe one: KEY, '\n', its length as 64-bit little endian,
 * the bytes, '\n' (systemd's docs/JOURNAL_NATIVE_PROTOCOL.md). */
static void append_field(GString *out, const char *key, const char *value, gsize len)
{
  if (!memchr(value, '\n', len)) {
    g_string_append(out, key);
    g_string_append_c(out, '=');
    g_string_append_len(out, value, (gssize)len);
    g_string_append_c(out, '\n');
    return;
  }
  guint64 le = GUINT64_TO_LE((guint64)len);
  g_string_append(out, key);
  g_string_append_c(out, '\n');
  g_string_append_len(out, (const char *)&le, sizeof(le));
  g_string_append_len(out, value, (gssize)len);
  g_string_append_c(out, '\n');
}

/* TRUE when journald took the datagram. No socket is kept between calls: a socket and a
 * sendto per message is cheap at a daemon's log rate, and it leaves this module without
 * state to share between threads or to go stale when journald restarts. */
static gboolean journal_send(const char *path, const GString *datagram)
{
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  gsize path_len = strnlen(path, sizeof(addr.sun_path));
  if (path_len == 0 || path_len >= sizeof(addr.sun_path))
    return FALSE;
  memcpy(addr.sun_path, path, path_len);

  vmlet_autofd fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return FALSE;
  /* A datagram must fit the send buffer whole. The bounds keep it far below the kernel's
   * default (net.core.wmem_default, 208 KiB), so this only matters on hosts tuned lower;
   * a failure leaves the default and, at worst, sends the message to stderr. (libsystemd
   * passes a sealed memfd for oversized entries; the bound makes that unnecessary.) */
  int sndbuf = 2 * (VMLET_LOG_MAX_MESSAGE + 4096);
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

  /* MSG_DONTWAIT: when journald falls behind, its queue fills and a blocking send would
   * stall the agent's main loop, and with it every VM's supervision; the message goes to
   * stderr instead. */
  ssize_t n;
  do
    n = sendto(fd, datagram->str, datagram->len, MSG_NOSIGNAL | MSG_DONTWAIT,
               (const struct sockaddr *)&addr,
               (socklen_t)(G_STRUCT_OFFSET(struct sockaddr_un, sun_path) + path_len + 1));
  while (n < 0 && errno == EINTR);
  return n >= 0 && (gsize)n == datagram->len;
}

/* Control characters would break the one-line form (a newline starts what reads as a new
 * entry; an escape sequence rewrites the terminal), so they are written as C escapes. */
static void append_escaped(GString *out, const char *s, gsize len)
{
  for (gsize i = 0; i < len; i++) {
    guchar c = (guchar)s[i];
    switch (c) {
    case '\n':
      g_string_append(out, "\\n");
      break;
    case '\r':
      g_string_append(out, "\\r");
      break;
    case '\t':
      g_string_append(out, "\\t");
      break;
    default:
      if (c < 0x20 || c == 0x7f)
        g_string_append_printf(out, "\\x%02x", c);
      else
        g_string_append_c(out, (char)c);
    }
  }
}

static void stderr_write(int priority, const char *vm, gsize vm_len, const char *msg,
                         gsize msg_len)
{
  g_autoptr(GString) line = g_string_sized_new(msg_len + 64);
  g_string_append(line, level_names[priority]);
  g_string_append(line, ": ");
  if (vm) {
    g_string_append_c(line, '[');
    append_escaped(line, vm, vm_len);
    g_string_append(line, "] ");
  }
  append_escaped(line, msg, msg_len);
  g_string_append_c(line, '\n');

  /* One write per line: lines of concurrent writers (threads, a child sharing stderr) do
   * not interleave mid-line the way stdio's partial flushes can. */
  const char *p = line->str;
  gsize left = line->len;
  while (left > 0) {
    ssize_t n = write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return; /* nowhere left to report it */
    p += n;
    left -= (gsize)n;
  }
}

void vmlet_logv(int priority, const char *vm, const char *fmt, va_list ap)
{
  int saved_errno = errno; /* callers may log between a failure and reading errno */
  priority = clamp_priority(priority);

  char short_buf[SHORT_MESSAGE];
  g_autofree char *long_buf = NULL;
  char *msg = short_buf;
  va_list ap2;
  va_copy(ap2, ap);
  int n = g_vsnprintf(short_buf, sizeof(short_buf), fmt, ap);
  if (n >= (int)sizeof(short_buf)) {
    /* One byte past the bound shows whether the text was cut, and where. */
    long_buf = g_malloc(VMLET_LOG_MAX_MESSAGE + 2);
    n = g_vsnprintf(long_buf, VMLET_LOG_MAX_MESSAGE + 2, fmt, ap2);
    msg = long_buf;
  }
  va_end(ap2);
  if (n < 0) {
    msg = short_buf;
    g_strlcpy(short_buf, "(unformattable log message)", sizeof(short_buf));
    n = (int)strlen(short_buf);
  }

  g_autoptr(GString) text = NULL;
  gsize msg_len = (gsize)n;
  if (msg_len > VMLET_LOG_MAX_MESSAGE) {
    msg_len = cut_utf8(msg, msg_len, VMLET_LOG_MAX_MESSAGE);
    text = g_string_new_len(msg, (gssize)msg_len);
    g_string_append(text, "...");
    msg = text->str;
    msg_len = text->len;
  }

  gsize vm_len = 0;
  if (vm) {
    vm_len = strnlen(vm, VMLET_LOG_MAX_VM + 1);
    if (vm_len > VMLET_LOG_MAX_VM)
      vm_len = cut_utf8(vm, vm_len, VMLET_LOG_MAX_VM);
  }

  const char *journal = g_getenv("VMLET_JOURNAL_SOCKET");
  if (!journal || !*journal)
    journal = JOURNAL_SOCKET;

  g_autoptr(GString) datagram = g_string_sized_new(msg_len + 128);
  char prio_text[2] = {(char)('0' + priority), '\0'};
  append_field(datagram, "MESSAGE", msg, msg_len);
  append_field(datagram, "PRIORITY", prio_text, 1);
  append_field(datagram, "SYSLOG_IDENTIFIER", "vmletd", strlen("vmletd"));
  if (vm)
    append_field(datagram, "VMLET_VM", vm, vm_len);

  if (!journal_send(journal, datagram))
    stderr_write(priority, vm, vm_len, msg, msg_len);
  errno = saved_errno;
}

void vmlet_log(int priority, const char *vm, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vmlet_logv(priority, vm, fmt, ap);
  va_end(ap);
}
