/* The logging edge: journal native protocol datagrams received by a real AF_UNIX socket
 * standing in for /run/systemd/journal/socket, parsed back as journald parses them, and
 * the stderr line when no journal takes the message (stderr captured in a real file). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "fileio.h"
#include "log.h"

typedef struct {
  char *dir;
  char *path;
  int fd;
} Journal;

static void journal_clear(Journal *j)
{
  if (j->fd >= 0)
    close(j->fd);
  if (j->path)
    g_unlink(j->path);
  if (j->dir)
    g_rmdir(j->dir);
  g_free(j->path);
  g_free(j->dir);
  g_unsetenv("VMLET_JOURNAL_SOCKET");
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Journal, journal_clear)

/* A datagram socket at a fresh path, named by $VMLET_JOURNAL_SOCKET. */
static void journal_init(Journal *j)
{
  j->dir = g_dir_make_tmp("vmlet-log-XXXXXX", NULL);
  g_assert_nonnull(j->dir);
  j->path = g_build_filename(j->dir, "socket", NULL);
  j->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  g_assert_cmpint(j->fd, >=, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  g_assert_cmpuint(strlen(j->path), <, sizeof(addr.sun_path));
  strcpy(addr.sun_path, j->path);
  g_assert_cmpint(bind(j->fd, (const struct sockaddr *)&addr, sizeof(addr)), ==, 0);
  g_setenv("VMLET_JOURNAL_SOCKET", j->path, TRUE);
}

/* The next datagram (queued before sendto() returned), or NULL. */
static GBytes *next_datagram(Journal *j)
{
  gsize size = 2 * VMLET_LOG_MAX_MESSAGE;
  g_autofree guint8 *buf = g_malloc(size);
  ssize_t n = recv(j->fd, buf, size, MSG_DONTWAIT);
  if (n < 0) {
    g_assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return NULL;
  }
  return g_bytes_new(buf, (gsize)n);
}

/* Parses a native-protocol datagram into field -> value (GBytes), the way journald does:
 * KEY=VALUE\n, or KEY\n <le64 length> VALUE \n. Fails the test on anything malformed or
 * on a repeated field. */
static GHashTable *parse_fields(GBytes *datagram)
{
  GHashTable *fields =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
  gsize len = 0;
  const guint8 *p = g_bytes_get_data(datagram, &len);
  const guint8 *end = p + len;
  while (p < end) {
    const guint8 *key_end = p;
    while (key_end < end && *key_end != '=' && *key_end != '\n')
      key_end++;
    g_assert_true(key_end < end);
    g_autofree char *key = g_strndup((const char *)p, (gsize)(key_end - p));
    GBytes *value = NULL;
    if (*key_end == '=') {
      const guint8 *nl = memchr(key_end + 1, '\n', (gsize)(end - key_end - 1));
      g_assert_nonnull(nl);
      value = g_bytes_new(key_end + 1, (gsize)(nl - key_end - 1));
      p = nl + 1;
    } else {
      guint64 le = 0;
      g_assert_cmpint(end - (key_end + 1), >=, 8);
      memcpy(&le, key_end + 1, 8);
      guint64 vlen = GUINT64_FROM_LE(le);
      const guint8 *v = key_end + 1 + 8;
      g_assert_cmpuint(vlen + 1, <=, (guint64)(end - v));
      g_assert_cmpint(v[vlen], ==, '\n');
      value = g_bytes_new(v, (gsize)vlen);
      p = v + vlen + 1;
    }
    g_assert_false(g_hash_table_contains(fields, key));
    g_hash_table_insert(fields, g_steal_pointer(&key), value);
  }
  return fields;
}

static char *field(GHashTable *fields, const char *key)
{
  GBytes *v = g_hash_table_lookup(fields, key);
  if (!v)
    return NULL;
  gsize len = 0;
  const char *data = g_bytes_get_data(v, &len);
  return g_strndup(data, len);
}

static void assert_field(GHashTable *fields, const char *key, const char *expected)
{
  g_autofree char *got = field(fields, key);
  g_assert_cmpstr(got, ==, expected);
}

static void test_fields(void)
{
  g_auto(Journal) j = {.fd = -1};
  journal_init(&j);

  vmlet_log(LOG_WARNING, "default.linux-vm", "disk %s missing", "linux-vm-root");
  g_autoptr(GBytes) d = next_datagram(&j);
  g_assert_nonnull(d);
  /* The exact bytes journald receives. */
  static const char expected[] = "MESSAGE=disk linux-vm-root missing\n"
                                 "PRIORITY=4\n"
                                 "SYSLOG_IDENTIFIER=vmletd\n"
                                 "VMLET_VM=default.linux-vm\n";
  g_assert_cmpmem(g_bytes_get_data(d, NULL), g_bytes_get_size(d), expected,
                  sizeof(expected) - 1);

  /* Without a VM there is no VMLET_VM field. */
  vmlet_log(LOG_INFO, NULL, "%d VMs: %d Running", 3, 3);
  g_autoptr(GBytes) d2 = next_datagram(&j);
  g_assert_nonnull(d2);
  g_autoptr(GHashTable) f = parse_fields(d2);
  g_assert_cmpuint(g_hash_table_size(f), ==, 3);
  assert_field(f, "MESSAGE", "3 VMs: 3 Running");
  assert_field(f, "PRIORITY", "6");
  assert_field(f, "SYSLOG_IDENTIFIER", "vmletd");
  g_assert_null(g_hash_table_lookup(f, "VMLET_VM"));

  g_autoptr(GBytes) none = next_datagram(&j);
  g_assert_null(none);
}

static void test_priorities(void)
{
  g_auto(Journal) j = {.fd = -1};
  journal_init(&j);
  const struct {
    int given;
    const char *sent;
  } cases[] = {
      {LOG_EMERG, "3"}, {LOG_CRIT, "3"},   {LOG_ERR, "3"},  {LOG_WARNING, "4"}, {LOG_NOTICE, "5"},
      {LOG_INFO, "6"},  {LOG_DEBUG, "7"}, {42, "7"},      {-1, "3"},
  };
  for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
    vmlet_log(cases[i].given, NULL, "p");
    g_autoptr(GBytes) d = next_datagram(&j);
    g_assert_nonnull(d);
    g_autoptr(GHashTable) f = parse_fields(d);
    assert_field(f, "PRIORITY", cases[i].sent);
  }
}

static void test_newline_binary_form(void)
{
  g_auto(Journal) j = {.fd = -1};
  journal_init(&j);

  vmlet_log(LOG_ERR, "default.linux-vm", "qemu exited:\n%s", "qemu-system-x86_64: -m 1T: bad\n");
  g_autoptr(GBytes) d = next_datagram(&j);
  g_assert_nonnull(d);

  /* The framing itself: "MESSAGE\n", 8-byte little-endian length, the bytes, "\n". */
  static const char msg[] = "qemu exited:\nqemu-system-x86_64: -m 1T: bad\n";
  const gsize msg_len = sizeof(msg) - 1;
  gsize len = 0;
  const guint8 *p = g_bytes_get_data(d, &len);
  g_assert_cmpuint(len, >, 8 + 8 + msg_len + 1);
  g_assert_cmpmem(p, 8, "MESSAGE\n", 8);
  guint8 le[8] = {(guint8)msg_len, 0, 0, 0, 0, 0, 0, 0};
  g_assert_cmpmem(p + 8, 8, le, 8);
  g_assert_cmpmem(p + 16, msg_len, msg, msg_len);
  g_assert_cmpint(p[16 + msg_len], ==, '\n');

  g_autoptr(GHashTable) f = parse_fields(d);
  g_assert_cmpuint(g_hash_table_size(f), ==, 4);
  assert_field(f, "MESSAGE", msg);
  assert_field(f, "PRIORITY", "3");
  assert_field(f, "SYSLOG_IDENTIFIER", "vmletd");
  assert_field(f, "VMLET_VM", "default.linux-vm");

  /* A VM name with a newline (never valid, but not trusted) takes the same form. */
  vmlet_log(LOG_INFO, "a\nb", "x");
  g_autoptr(GBytes) d2 = next_datagram(&j);
  g_autoptr(GHashTable) f2 = parse_fields(d2);
  assert_field(f2, "VMLET_VM", "a\nb");
  assert_field(f2, "MESSAGE", "x");
}

static void test_bounded(void)
{
  g_auto(Journal) j = {.fd = -1};
  journal_init(&j);

  /* 'a' then 2-byte characters: byte VMLET_LOG_MAX_MESSAGE falls inside one, so the cut
   * moves back to the character boundary, one byte short of the bound. */
  GString *big = g_string_new("a");
  for (int i = 0; i < VMLET_LOG_MAX_MESSAGE; i++)
    g_string_append(big, "\xc3\xa9"); /* é */
  vmlet_log(LOG_INFO, NULL, "%s", big->str);
  g_string_free(big, TRUE);

  g_autoptr(GBytes) d = next_datagram(&j);
  g_assert_nonnull(d);
  g_autoptr(GHashTable) f = parse_fields(d);
  g_autofree char *msg = field(f, "MESSAGE");
  g_assert_cmpuint(strlen(msg), ==, VMLET_LOG_MAX_MESSAGE - 1 + 3);
  g_assert_true(g_utf8_validate(msg, -1, NULL));
  g_assert_true(g_str_has_suffix(msg, "\xc3\xa9..."));

  /* At the bound exactly: whole, no marker. */
  g_autofree char *exact = g_strnfill(VMLET_LOG_MAX_MESSAGE, 'x');
  vmlet_log(LOG_INFO, NULL, "%s", exact);
  g_autoptr(GBytes) d2 = next_datagram(&j);
  g_autoptr(GHashTable) f2 = parse_fields(d2);
  assert_field(f2, "MESSAGE", exact);

  /* A VM name past its bound is cut too. */
  g_autofree char *long_vm = g_strnfill(VMLET_LOG_MAX_VM + 50, 'v');
  vmlet_log(LOG_INFO, long_vm, "x");
  g_autoptr(GBytes) d3 = next_datagram(&j);
  g_autoptr(GHashTable) f3 = parse_fields(d3);
  g_autofree char *vm = field(f3, "VMLET_VM");
  g_assert_cmpuint(strlen(vm), ==, VMLET_LOG_MAX_VM);
}

/* Runs fn with stderr redirected to a temporary file and returns what was written. */
static char *capture_stderr(void (*fn)(void))
{
  g_autofree char *path = NULL;
  int file = g_file_open_tmp("vmlet-log-stderr-XXXXXX", &path, NULL);
  g_assert_cmpint(file, >=, 0);
  int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  g_assert_cmpint(saved, >=, 0);
  g_assert_cmpint(dup2(file, STDERR_FILENO), ==, STDERR_FILENO);
  fn();
  g_assert_cmpint(dup2(saved, STDERR_FILENO), ==, STDERR_FILENO);
  close(saved);
  close(file);
  char *out = NULL;
  g_assert_true(g_file_get_contents(path, &out, NULL, NULL));
  g_unlink(path);
  return out;
}

static void log_some(void)
{
  vmlet_log(LOG_WARNING, "default.linux-vm", "disk %s missing", "linux-vm-root");
  vmlet_log(LOG_INFO, NULL, "3 VMs: 2 Running, 1 Stopped");
  vmlet_log(LOG_ERR, "default.linux-vm", "qemu exited:\nbad\targ \x1b[31mred");
  vmlet_log(LOG_CRIT, NULL, "clamped");
  vmlet_log(LOG_NOTICE, NULL, "n");
  vmlet_log(LOG_DEBUG + 5, NULL, "verbose");
}

static const char log_some_stderr[] =
    "warning: [default.linux-vm] disk linux-vm-root missing\n"
    "info: 3 VMs: 2 Running, 1 Stopped\n"
    "error: [default.linux-vm] qemu exited:\\nbad\\targ \\x1b[31mred\n"
    "error: clamped\n"
    "notice: n\n"
    "debug: verbose\n";

static void test_stderr_no_journal(void)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-log-XXXXXX", NULL);
  g_autofree char *missing = g_build_filename(dir, "no-such-socket", NULL);
  g_setenv("VMLET_JOURNAL_SOCKET", missing, TRUE);
  g_autofree char *out = capture_stderr(log_some);
  g_assert_cmpstr(out, ==, log_some_stderr);
  g_unsetenv("VMLET_JOURNAL_SOCKET");
  g_rmdir(dir);
}

/* The socket file exists but journald is gone (ECONNREFUSED): stderr as well. */
static void test_stderr_journal_down(void)
{
  g_auto(Journal) j = {.fd = -1};
  journal_init(&j);
  close(j.fd);
  j.fd = -1;
  g_assert_true(g_file_test(j.path, G_FILE_TEST_EXISTS));
  g_autofree char *out = capture_stderr(log_some);
  g_assert_cmpstr(out, ==, log_some_stderr);
}

/* Journald takes the message: nothing on stderr. */
static void log_one(void)
{
  vmlet_log(LOG_INFO, NULL, "to the journal");
}

static void test_journal_not_stderr(void)
{
  g_auto(Journal) j = {.fd = -1};
  journal_init(&j);
  g_autofree char *out = capture_stderr(log_one);
  g_assert_cmpstr(out, ==, "");
  g_autoptr(GBytes) d = next_datagram(&j);
  g_assert_nonnull(d);
}

static void test_errno_preserved(void)
{
  g_auto(Journal) j = {.fd = -1};
  journal_init(&j);
  errno = ENOSPC;
  vmlet_log(LOG_ERR, NULL, "write failed: %s", g_strerror(errno));
  g_assert_cmpint(errno, ==, ENOSPC);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_unsetenv("VMLET_JOURNAL_SOCKET");
  g_test_add_func("/log/fields", test_fields);
  g_test_add_func("/log/priorities", test_priorities);
  g_test_add_func("/log/newline-binary-form", test_newline_binary_form);
  g_test_add_func("/log/bounded", test_bounded);
  g_test_add_func("/log/stderr-no-journal", test_stderr_no_journal);
  g_test_add_func("/log/stderr-journal-down", test_stderr_journal_down);
  g_test_add_func("/log/journal-not-stderr", test_journal_not_stderr);
  g_test_add_func("/log/errno-preserved", test_errno_preserved);
  return g_test_run();
}
