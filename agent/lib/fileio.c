#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "vmlet-error.h"

gboolean vmlet_read_fd_bounded(int fd, const char *name, gsize max_bytes, char **out_contents,
                               gsize *out_length, GError **error)
{
  /* The buffer grows with what is read: a limit of 1 MiB must not cost 1 MiB per small
   * file (every reload reads every drop-in; glibc serves such blocks from the heap once its
   * mmap threshold has adapted, and the daemon's RSS kept them). Reading up to
   * max_bytes + 1 still catches a file over the limit, or one that grew after fstat. */
  gsize cap = MIN(max_bytes + 2, (gsize)4096), len = 0;
  g_autofree char *buf = g_malloc(cap);
  for (;;) {
    if (len + 1 == cap && cap < max_bytes + 2) {
      cap = MIN(cap * 2, max_bytes + 2);
      buf = g_realloc(buf, cap);
    }
    ssize_t n = read(fd, buf + len, MIN(cap - 1, max_bytes + 1) - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: read failed: %s", name,
                  g_strerror(errno));
      return FALSE;
    }
    if (n == 0)
      break;
    len += (gsize)n;
    if (len > max_bytes) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                  "%s: larger than the limit of %" G_GSIZE_FORMAT " bytes", name, max_bytes);
      return FALSE;
    }
  }
  buf[len] = '\0';
  *out_contents = g_steal_pointer(&buf);
  if (out_length)
    *out_length = len;
  return TRUE;
}

int vmlet_open_regular(const char *path, gsize max_bytes, struct stat *out_stat, GError **error)
{
  vmlet_autofd fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    g_set_error(error, VMLET_ERROR, e == ENOENT ? VMLET_ERROR_NOT_FOUND : VMLET_ERROR_IO,
                "%s: cannot open: %s", path, g_strerror(e));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot stat: %s", path,
                g_strerror(errno));
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: expected a regular file", path);
    return -1;
  }
  if ((guint64)st.st_size > max_bytes) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                "%s: file is %" G_GUINT64_FORMAT " bytes, the limit is %" G_GSIZE_FORMAT, path,
                (guint64)st.st_size, max_bytes);
    return -1;
  }
  *out_stat = st;
  int ret = fd;
  fd = -1;
  return ret;
}

gboolean vmlet_read_file_bounded(const char *path, gsize max_bytes, char **out_contents,
                                 gsize *out_length, GError **error)
{
  struct stat st;
  vmlet_autofd fd = vmlet_open_regular(path, max_bytes, &st, error);
  if (fd < 0)
    return FALSE;
  /* Read up to max_bytes + 1 so a file that grew after fstat is still caught. */
  return vmlet_read_fd_bounded(fd, path, max_bytes, out_contents, out_length, error);
}

gboolean vmlet_read_file_or_stdin(const char *path, gsize max_bytes, char **out_contents,
                                  gsize *out_length, GError **error)
{
  if (!g_str_equal(path, "-"))
    return vmlet_read_file_bounded(path, max_bytes, out_contents, out_length, error);
  return vmlet_read_fd_bounded(STDIN_FILENO, "<stdin>", max_bytes, out_contents, out_length,
                               error);
}

static gboolean write_all(int fd, const char *data, gsize len)
{
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return FALSE;
    data += n;
    len -= (gsize)n;
  }
  return TRUE;
}

static gboolean write_atomic(const char *path, const void *data, gsize len, mode_t mode,
                             gboolean sync, GError **error)
{
  g_autofree char *dir = g_path_get_dirname(path);
  g_autofree char *base = g_path_get_basename(path);
  g_autofree char *tmp = NULL;
  vmlet_autofd fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    g_free(tmp);
    tmp = g_strdup_printf("%s/.%s.%08x.tmp", dir, base, g_random_int());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0 && errno != EEXIST)
      break;
  }
  if (fd < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot create a temporary file: %s",
                path, g_strerror(errno));
    return FALSE;
  }
  /* open() applies the umask; the mode asked for is the mode wanted. */
  if (fchmod(fd, mode) < 0 || !write_all(fd, data, len) || (sync && fsync(fd) < 0)) {
    int e = errno;
    unlink(tmp);
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot write: %s", path, g_strerror(e));
    return FALSE;
  }
  vmlet_fd_close(&fd);
  if (rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot rename into place: %s", path,
                g_strerror(e));
    return FALSE;
  }
  if (!sync)
    return TRUE;
  /* The rename is durable only once the directory entry is. */
  vmlet_autofd dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || fsync(dfd) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot sync its directory: %s", path,
                g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

gboolean vmlet_write_file_atomic(const char *path, const void *data, gsize len, mode_t mode,
                                 GError **error)
{
  return write_atomic(path, data, len, mode, TRUE, error);
}

gboolean vmlet_write_file_atomic_nosync(const char *path, const void *data, gsize len,
                                        mode_t mode, GError **error)
{
  return write_atomic(path, data, len, mode, FALSE, error);
}

gboolean vmlet_sync_fs(const char *path, GError **error)
{
  vmlet_autofd fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0 || syncfs(fd) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot sync its file system: %s", path,
                g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}
