/* Small ISO 9660 images (cloud-init NoCloud seed, Sysprep answer files) built in process.
 *
 * KubeVirt runs xorrisofs once per VM start for the same job; with libisofs in process an
 * image costs well under a millisecond and no child process (0.2-0.4 ms per ISO here,
 * against a median of 106-121 ms for `xorrisofs -volid cidata -joliet -rock`: README
 * "Benchmarks"). */
#pragma once

#include <glib.h>

/* A seed carries a handful of small documents; these bounds keep a hostile Secret from
 * turning into a large allocation or a large file on the node. */
#define VMLET_ISO_MAX_FILES 16
#define VMLET_ISO_MAX_NAME_LEN 64 /* Joliet's limit for a file name, in characters */
#define VMLET_ISO_MAX_DATA_BYTES (4 * 1024 * 1024)
/* The Joliet volume descriptor holds 16 UCS-2 characters; a longer id would be cut there
 * while the primary descriptor kept it whole, and readers would disagree on the label. */
#define VMLET_ISO_MAX_VOLUME_ID_LEN 16

typedef struct {
  const char *name; /* 1-64 bytes of [A-Za-z0-9._-], not "." or ".." */
  const void *data; /* may be NULL when len is 0 */
  gsize len;
} VmletIsoFile;

/* Builds an ISO 9660 level 3 image with Rock Ridge and Joliet holding files in the root
 * directory. Rock Ridge and Joliet keep the names exactly (case included); the volume id
 * is written as given in both the primary and the Joliet volume descriptor.
 * volume_id: 1-16 bytes of [A-Za-z0-9_-].
 * The same inputs give the same bytes: every timestamp in the image is fixed. */
gboolean vmlet_iso_build(const char *volume_id, const VmletIsoFile *files, gsize n_files,
                         GBytes **out_image, GError **error);

/* vmlet_iso_build, then writes the image to path atomically with mode 0600: a temporary
 * file in the same directory is written, fsync'd and renamed over path, and the directory
 * is fsync'd. On failure path is left as it was and no temporary file remains. */
gboolean vmlet_iso_write(const char *path, const char *volume_id, const VmletIsoFile *files,
                         gsize n_files, GError **error);
