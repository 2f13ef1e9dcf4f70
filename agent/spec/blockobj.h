/* VirtualDisk, VirtualImage and ClusterVirtualImage as node-local objects.
 *
 * They keep the DVP shape (so `kubectl get vd -o json` output loads) and add one vmlet
 * block, spec.local {path, format}, saying where the data lives on this node. Without it
 * a disk lives at <disk-dir>/<name>.<format> and an image at <image-dir>/<name>.<ext>. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"
#include "meta.h"
#include "vmspec.h"

typedef enum {
  VMLET_FORMAT_QCOW2,
  VMLET_FORMAT_RAW,
  VMLET_FORMAT_ISO,
} VmletImageFormat;

typedef struct {
  gint refcount;
  VmBlockKind kind;
  VmletMeta meta;
  char *path;               /* NULL: the node's default location */
  VmletImageFormat format;  /* disks: qcow2 or raw; images: any */
  guint64 size;             /* VirtualDisk spec.persistentVolumeClaim.size; 0 when unset */
  gboolean has_source;      /* VirtualDisk spec.dataSource.objectRef */
  VmBlockKind source_kind;
  char *source_name;
} VmletBlockObject;

/* Parses one of the three kinds (root.kind decides). NULL when d has errors. */
VmletBlockObject *vmlet_block_object_parse(JsonObject *root, VmBlockKind kind, VmletDiag *d);
VmletBlockObject *vmlet_block_object_ref(VmletBlockObject *obj);
void vmlet_block_object_unref(VmletBlockObject *obj);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletBlockObject, vmlet_block_object_unref)

const char *vmlet_image_format_name(VmletImageFormat format);
/* File name extension for the default path: "qcow2", "img" or "iso". */
const char *vmlet_image_format_extension(VmletImageFormat format);

/* The object as a drop-in document (what a migration destination writes): its kind,
 * name, namespace (not for a ClusterVirtualImage), size, format and path (NULL: none,
 * the destination's default location). Labels and annotations go with it. */
JsonNode *vmlet_block_object_manifest(const VmletBlockObject *obj, const char *path);
