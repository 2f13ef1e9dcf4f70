/* Bounded file reading: every input vmlet reads has a size limit (docs/CONVENTIONS.md). */
#pragma once

#include <glib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* GLib 2.74 has no g_autofd: a small fd owner that closes on scope exit. */
typedef int VmletFd;
static inline void vmlet_fd_close(VmletFd *fd)
{
  if (fd && *fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}
#define vmlet_autofd __attribute__((cleanup(vmlet_fd_close))) VmletFd

/* Drop-ins are small documents; 1 MiB leaves ample room for kubectl output. */
#define VMLET_MAX_DROPIN_BYTES (1024 * 1024)

/* Reads a regular file of at most max_bytes into a NUL-terminated buffer.
 * Refuses non-regular files (FIFOs, devices) so a reader never blocks. */
gboolean vmlet_read_file_bounded(const char *path, gsize max_bytes, char **out_contents,
                                 gsize *out_length, GError **error);

/* The two halves of vmlet_read_file_bounded, for a caller that must check the file (owner,
 * mode) before reading it: opens path (O_CLOEXEC), checks through the descriptor that it
 * is a regular file of at most max_bytes and fills *out_stat from that same descriptor, so
 * what is checked is what is read. Returns the descriptor, or -1 with error set. */
int vmlet_open_regular(const char *path, gsize max_bytes, struct stat *out_stat, GError **error);
/* Reads fd to its end into a NUL-terminated buffer, refusing more than max_bytes; name is
 * used in errors. */
gboolean vmlet_read_fd_bounded(int fd, const char *name, gsize max_bytes, char **out_contents,
                               gsize *out_length, GError **error);

/* As vmlet_read_file_bounded, with "-" meaning standard input (same bound). */
gboolean vmlet_read_file_or_stdin(const char *path, gsize max_bytes, char **out_contents,
                                  gsize *out_length, GError **error);

/* Replaces path with data atomically: a temporary file in the same directory (O_EXCL,
 * O_CLOEXEC, the given mode), written and fsynced, renamed over path, then the directory
 * fsynced. A crash leaves either the old file or the new one, never a mix; on failure the
 * temporary file is removed and path is untouched. */
gboolean vmlet_write_file_atomic(const char *path, const void *data, gsize len, mode_t mode,
                                 GError **error);
/* As vmlet_write_file_atomic without the fsyncs: still atomic for readers and across a
 * crash of the writer (the rename), durable once the caller has called vmlet_sync_fs. For
 * many files written at once, one sync of the file system instead of two per file. */
gboolean vmlet_write_file_atomic_nosync(const char *path, const void *data, gsize len,
                                        mode_t mode, GError **error);
/* syncfs(2) on the file system that holds path. */
gboolean vmlet_sync_fs(const char *path, GError **error);
