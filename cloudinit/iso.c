#include "iso.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h> /* libisofs.h uses uint8_t and friends without including it */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Without libburn, libisofs.h declares struct burn_source only when asked to; it is the
 * only way libisofs hands out the image bytes. */
#define LIBISOFS_WITHOUT_LIBBURN 1
/* libisofs.h declares iso_init() and two others with "()"; the project's warnings are
 * for its own code. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <libisofs.h>
#pragma GCC diagnostic pop

#include "fileio.h"
#include "vmlet-error.h"

/* Every timestamp in the image (volume descriptors, directory records, Rock Ridge TF) is
 * this instant, so equal inputs give equal bytes: a re-rendered seed compares equal to
 * the one on disk, and tests can compare images. The guest has no use for the times.
 * 2000-01-01T00:00:00Z, written as ECMA-119 digits for iso_write_opts_set_pvd_times(),
 * which records it as GMT whatever the node's time zone. */
#define FIXED_TIME ((time_t)946684800)
#define FIXED_TIME_DIGITS "2000010100000000"

/* Directory records, path tables and volume descriptors of a 16-file image fit in a few
 * dozen blocks; anything past this means libisofs computed something unexpected. */
#define MAX_IMAGE_OVERHEAD (1024 * 1024)
#define ISO_BLOCK 2048
/* libisofs's ring buffer between its writer thread and us, in 2 KiB blocks: its minimum.
 * The default is 2 MiB, allocated and freed per image; a seed is a few dozen blocks. */
#define FIFO_BLOCKS 32
/* What one read from the ring buffer asks for when the image goes to a file. */
#define CHUNK_BYTES (8 * ISO_BLOCK)

typedef struct burn_source VmletBurnSource;

static void burn_source_dispose(VmletBurnSource *bs)
{
  if (!bs)
    return;
  /* free_data joins libisofs's writer thread when it is still running. Without libburn
   * there is no burn_source_free(); the struct itself comes from libisofs's malloc. */
  bs->free_data(bs);
  free(bs);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(IsoImage, iso_image_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(IsoWriteOpts, iso_write_opts_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletBurnSource, burn_source_dispose)

static gpointer iso_init_once(gpointer data)
{
  /* bit0: do not call setlocale(); a library must not change the process's locale. */
  int ret = iso_init_with_flag(1);
  if (ret < 0)
    return GINT_TO_POINTER(ret);
  /* Library code never logs (docs/CONVENTIONS.md): libisofs prints FATAL messages to stderr by
   * default, and queued messages would pile up since nothing reads them. Failures reach
   * the caller as return codes instead. */
  iso_set_msgs_severities("NEVER", "NEVER", "libisofs: ");
  /* Names and volume ids are ASCII; fixing the charset keeps the result independent of
   * whatever locale the process runs in. */
  iso_set_local_charset("UTF-8", 0);
  return GINT_TO_POINTER(1);
}

static gboolean iso_ensure_init(GError **error)
{
  static GOnce once = G_ONCE_INIT;
  int ret = GPOINTER_TO_INT(g_once(&once, iso_init_once, NULL));
  if (ret < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "cannot initialise libisofs: %s",
                iso_error_to_msg(ret));
    return FALSE;
  }
  return TRUE;
}

static gboolean set_iso_error(GError **error, int ret, const char *what)
{
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "building the ISO image: %s: %s", what,
              iso_error_to_msg(ret));
  return FALSE;
}

static gboolean check_volume_id(const char *volume_id, GError **error)
{
  gsize len = volume_id ? strlen(volume_id) : 0;
  if (len == 0 || len > VMLET_ISO_MAX_VOLUME_ID_LEN) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "ISO volume id must be 1 to %d characters, got %" G_GSIZE_FORMAT,
                VMLET_ISO_MAX_VOLUME_ID_LEN, len);
    return FALSE;
  }
  for (gsize i = 0; i < len; i++) {
    char c = volume_id[i];
    if (!g_ascii_isalnum(c) && c != '_' && c != '-') {
      g_autofree char *shown = g_strescape(volume_id, NULL);
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "ISO volume id \"%s\": only letters, digits, '_' and '-' are allowed",
                  shown);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean check_name(const char *name, gsize index, GError **error)
{
  if (!name) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "ISO file %" G_GSIZE_FORMAT
                ": no name", index);
    return FALSE;
  }
  gsize len = strnlen(name, VMLET_ISO_MAX_NAME_LEN + 1);
  if (len == 0 || len > VMLET_ISO_MAX_NAME_LEN) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "ISO file %" G_GSIZE_FORMAT ": name must be 1 to %d characters%s", index,
                VMLET_ISO_MAX_NAME_LEN, len == 0 ? ", got an empty name" : "");
    return FALSE;
  }
  for (gsize i = 0; i < len; i++) {
    char c = name[i];
    if (!g_ascii_isalnum(c) && c != '.' && c != '_' && c != '-') {
      g_autofree char *shown = g_strescape(name, NULL);
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "ISO file name \"%s\": only letters, digits, '.', '_' and '-' are allowed",
                  shown);
      return FALSE;
    }
  }
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "ISO file name \"%s\" is reserved for directories", name);
    return FALSE;
  }
  return TRUE;
}

static gboolean check_files(const VmletIsoFile *files, gsize n_files, GError **error)
{
  if (n_files == 0) {
    g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_INVALID, "ISO image has no files");
    return FALSE;
  }
  if (n_files > VMLET_ISO_MAX_FILES) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                "ISO image has %" G_GSIZE_FORMAT " files, the limit is %d", n_files,
                VMLET_ISO_MAX_FILES);
    return FALSE;
  }
  gsize total = 0;
  for (gsize i = 0; i < n_files; i++) {
    if (!check_name(files[i].name, i, error))
      return FALSE;
    if (!files[i].data && files[i].len > 0) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "ISO file %s: no data",
                  files[i].name);
      return FALSE;
    }
    /* Checked one file at a time so the sum cannot overflow. */
    if (files[i].len > VMLET_ISO_MAX_DATA_BYTES - total) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                  "ISO file %s: the files add up to more than %d bytes", files[i].name,
                  VMLET_ISO_MAX_DATA_BYTES);
      return FALSE;
    }
    total += files[i].len;
    /* Windows reads the Joliet tree case-insensitively, and the ECMA-119 tree is upper
     * case: names that differ only in case would collide there. */
    for (gsize j = 0; j < i; j++) {
      if (g_ascii_strcasecmp(files[i].name, files[j].name) == 0) {
        g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                    "ISO file names \"%s\" and \"%s\" are the same ignoring case",
                    files[j].name, files[i].name);
        return FALSE;
      }
    }
  }
  return TRUE;
}

static void fix_node_times(IsoNode *node)
{
  iso_node_set_mtime(node, FIXED_TIME);
  iso_node_set_atime(node, FIXED_TIME);
  iso_node_set_ctime(node, FIXED_TIME);
}

static gboolean add_file(IsoDir *root, const VmletIsoFile *file, GError **error)
{
  /* The memory stream takes a malloc'd buffer and free()s it itself; copying also means
   * the caller's buffer need not outlive the call. */
  unsigned char *copy = malloc(file->len > 0 ? file->len : 1);
  if (!copy) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "ISO file %s: out of memory", file->name);
    return FALSE;
  }
  if (file->len > 0)
    memcpy(copy, file->data, file->len);
  IsoStream *stream = NULL;
  int ret = iso_memory_stream_new(copy, file->len, &stream);
  if (ret < 0) {
    free(copy);
    return set_iso_error(error, ret, file->name);
  }
  IsoFile *node = NULL;
  /* On success the new node owns the stream's reference. */
  ret = iso_tree_add_new_file(root, file->name, stream, &node);
  if (ret < 0) {
    iso_stream_unref(stream);
    return set_iso_error(error, ret, file->name);
  }
  fix_node_times((IsoNode *)node);
  return TRUE;
}

static IsoWriteOpts *new_write_opts(GError **error)
{
  g_autoptr(IsoWriteOpts) opts = NULL;
  /* Profile 2 ("distribution"): Rock Ridge and Joliet on, ownership and permissions
   * replaced by neutral defaults (root, 0444 files, 0555 directories). */
  int ret = iso_write_opts_new(&opts, 2);
  if (ret < 0) {
    set_iso_error(error, ret, "write options");
    return NULL;
  }
  iso_write_opts_set_iso_level(opts, 3);
  iso_write_opts_set_rockridge(opts, 1);
  iso_write_opts_set_joliet(opts, 1);
  /* Keeps the primary volume id as given instead of upper-casing it to d-characters:
   * KubeVirt's xorrisofs seed is labelled "cidata", and cloud-init and blkid then see the
   * same label in the primary and the Joliet descriptor. */
  iso_write_opts_set_relaxed_vol_atts(opts, 1);
  /* Joliet names exactly as given, like xorrisofs writes them: without these libisofs
   * turns "user-data" into "user-data.;1" there. The ECMA-119 tree keeps its strict
   * 8.3-style names (USER_DATA.;1) for readers that know neither extension. */
  iso_write_opts_set_omit_version_numbers(opts, 2);
  iso_write_opts_set_no_force_dots(opts, 2);
  iso_write_opts_set_always_gmt(opts, 1);
  iso_write_opts_set_replace_timestamps(opts, 2);
  iso_write_opts_set_default_timestamp(opts, FIXED_TIME);
  /* The "uuid" overrides creation and modification time and, through them, the recording
   * time libisofs uses for directory records. */
  iso_write_opts_set_pvd_times(opts, FIXED_TIME, FIXED_TIME, 0, 0, FIXED_TIME_DIGITS);
  iso_write_opts_set_fifo_size(opts, FIFO_BLOCKS);
  return g_steal_pointer(&opts);
}

/* Where the image bytes go: a file descriptor, or one buffer allocated once libisofs has
 * announced the size. Writing straight to the file keeps vmlet_iso_write from holding a
 * whole image (up to 4 MiB) in memory. */
typedef struct {
  int fd; /* >= 0: write here */
  const char *fd_path;
  guint8 *buf; /* fd < 0: the image */
  gsize size;
} ImageSink;

static gboolean write_all(int fd, const guint8 *data, gsize len, const char *path,
                          GError **error)
{
  while (len > 0) {
    ssize_t n = write(fd, data, MIN(len, (gsize)G_MAXSSIZE));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: write failed: %s", path,
                  g_strerror(errno));
      return FALSE;
    }
    data += n;
    len -= (gsize)n;
  }
  return TRUE;
}

/* Moves the image from the burn_source to the sink. libisofs's ring buffer drops a partial
 * read at end of data, so no read asks for more than what remains of the announced size. */
static gboolean drain_image(VmletBurnSource *bs, ImageSink *sink, GError **error)
{
  off_t size = bs->get_size(bs);
  if (size <= 0 || size % ISO_BLOCK != 0 ||
      size > VMLET_ISO_MAX_DATA_BYTES + MAX_IMAGE_OVERHEAD) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO,
                "building the ISO image: libisofs announced an image of %lld bytes",
                (long long)size);
    return FALSE;
  }
  gsize total = (gsize)size;
  g_autofree guint8 *buf = sink->fd < 0 ? g_malloc(total) : NULL;
  guint8 chunk[CHUNK_BYTES];
  gsize done = 0;
  while (done < total) {
    int want = (int)MIN(total - done, (gsize)CHUNK_BYTES);
    guint8 *dest = buf ? buf + done : chunk;
    int n = bs->read_xt(bs, dest, want);
    if (n != want) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO,
                  "building the ISO image: libisofs stopped after %" G_GSIZE_FORMAT
                  " of %" G_GSIZE_FORMAT " bytes",
                  done, total);
      return FALSE;
    }
    if (!buf && !write_all(sink->fd, chunk, (gsize)n, sink->fd_path, error))
      return FALSE;
    done += (gsize)n;
  }
  /* libisofs's writer thread closes its end with or without an error after the last
   * block: wait for that end of data and ask how it ended (2: "ending" without error). */
  int n = bs->read_xt(bs, chunk, ISO_BLOCK);
  int status = iso_ring_buffer_get_status(bs, NULL, NULL);
  if (n != 0 || status != 2) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO,
                "building the ISO image: libisofs's writer did not end cleanly "
                "(%d more bytes, ring buffer state %d)",
                n, status);
    return FALSE;
  }
  sink->buf = g_steal_pointer(&buf);
  sink->size = total;
  return TRUE;
}

static gboolean check_args(const char *volume_id, const VmletIsoFile *files, gsize n_files,
                           GError **error)
{
  return check_volume_id(volume_id, error) && check_files(files, n_files, error);
}

/* libisofs keeps process-wide counters (e.g. the serial number of memory streams) that it
 * updates without locking; builds take this lock so concurrent callers cannot race on
 * them. A build takes well under a millisecond. */
static GMutex build_lock;

/* The arguments are checked already. */
static gboolean generate(const char *volume_id, const VmletIsoFile *files, gsize n_files,
                         ImageSink *sink, GError **error)
{
  if (!iso_ensure_init(error))
    return FALSE;

  /* Held until return; clang counts a variable used only by its cleanup as unused. */
  G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&build_lock);
  g_autoptr(IsoImage) image = NULL;
  int ret = iso_image_new(volume_id, &image);
  if (ret < 0)
    return set_iso_error(error, ret, "new image");
  IsoDir *root = iso_image_get_root(image);
  fix_node_times((IsoNode *)root);
  for (gsize i = 0; i < n_files; i++) {
    if (!add_file(root, &files[i], error))
      return FALSE;
  }
  g_autoptr(IsoWriteOpts) opts = new_write_opts(error);
  if (!opts)
    return FALSE;
  g_autoptr(VmletBurnSource) bs = NULL;
  ret = iso_image_create_burn_source(image, opts, &bs);
  if (ret < 0)
    return set_iso_error(error, ret, "start");
  return drain_image(bs, sink, error);
}

gboolean vmlet_iso_build(const char *volume_id, const VmletIsoFile *files, gsize n_files,
                         GBytes **out_image, GError **error)
{
  g_return_val_if_fail(files != NULL || n_files == 0, FALSE);
  g_return_val_if_fail(out_image != NULL, FALSE);

  if (!check_args(volume_id, files, n_files, error))
    return FALSE;
  ImageSink sink = {.fd = -1};
  if (!generate(volume_id, files, n_files, &sink, error))
    return FALSE;
  *out_image = g_bytes_new_take(sink.buf, sink.size);
  return TRUE;
}

static gboolean fsync_dir(const char *dir, GError **error)
{
  vmlet_autofd fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot sync directory: %s", dir,
                g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

/* Writes the temporary file completely and closes it; the caller unlinks it on failure. */
static gboolean write_temp(int fd, const char *tmp_path, const char *volume_id,
                           const VmletIsoFile *files, gsize n_files, GError **error)
{
  /* mkstemp's 0600 is subject to the umask; the image may hold passwords and keys, and it
   * is only ever read by root-run QEMU, so the mode is set explicitly. */
  if (fchmod(fd, 0600) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot set mode: %s", tmp_path,
                g_strerror(errno));
    return FALSE;
  }
  ImageSink sink = {.fd = fd, .fd_path = tmp_path};
  if (!generate(volume_id, files, n_files, &sink, error))
    return FALSE;
  if (fsync(fd) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: fsync failed: %s", tmp_path,
                g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

gboolean vmlet_iso_write(const char *path, const char *volume_id, const VmletIsoFile *files,
                         gsize n_files, GError **error)
{
  g_return_val_if_fail(path != NULL && *path != '\0', FALSE);
  g_return_val_if_fail(files != NULL || n_files == 0, FALSE);

  /* Refused input never creates a temporary file. */
  if (!check_args(volume_id, files, n_files, error)) {
    g_prefix_error(error, "%s: ", path);
    return FALSE;
  }
  g_autofree char *dir = g_path_get_dirname(path);
  g_autofree char *base = g_path_get_basename(path);
  /* Same directory, so the rename is atomic; a leading dot keeps a half-written image out
   * of globs such as *.iso. */
  g_autofree char *tmp_path = g_strdup_printf("%s/.%s.XXXXXX", dir, base);
  vmlet_autofd fd = g_mkstemp_full(tmp_path, O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    g_set_error(error, VMLET_ERROR, errno == ENOENT ? VMLET_ERROR_NOT_FOUND : VMLET_ERROR_IO,
                "%s: cannot create a temporary file: %s", path, g_strerror(errno));
    return FALSE;
  }
  gboolean ok = write_temp(fd, tmp_path, volume_id, files, n_files, error);
  if (ok) {
    int fd_to_close = fd;
    fd = -1;
    if (close(fd_to_close) < 0) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: close failed: %s", tmp_path,
                  g_strerror(errno));
      ok = FALSE;
    }
  }
  if (ok && rename(tmp_path, path) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot rename %s over it: %s", path,
                tmp_path, g_strerror(errno));
    ok = FALSE;
  }
  if (!ok) {
    unlink(tmp_path);
    return FALSE;
  }
  /* The new image is in place; without this the rename itself may not survive a crash. */
  return fsync_dir(dir, error);
}
