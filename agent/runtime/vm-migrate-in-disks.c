/* The destination's disks: each one the source announces placed on this node (its own
 * object, proven shared storage, or a new image of the same virtual size at this node's
 * default location, never an existing file overwritten). */
#include "vm-migrate-in.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "jsonval.h"
#include "mig-error.h"
#include "qemu-access.h"
#include "vmlet-error.h"

/* Where a disk lives on this node: this node's own object for it, else the object the
 * source sent, its path kept only on proven shared storage (vm_mig_place). The manifest
 * journaled is the one used: the drop-in written at the commit, and a restarted vmletd,
 * place the disk where this prepare did. */
static VmPlanDisk *place(VmMigIn *m, JsonObject *d, VmBlockKind kind, const char *name,
                         GError **error)
{
  VmletVm *vm = m->vm;
  g_autoptr(JsonNode) keep = NULL;
  g_autofree char *note = NULL;
  g_autoptr(VmletBlockObject) obj = vm_mig_place(
      vm->env->inv, kind, vm->namespace, name, json_object_get_member(d, "manifest"),
      m->journal->id, m->marker_token, &keep, &note, error);
  if (!obj)
    return NULL;
  if (note)
    vm_note(vm, LOG_WARNING, "migration %s from %s: %s", m->journal->id, m->source, note);
  if (keep)
    json_array_add_element(json_node_get_array(m->journal->manifests), g_steal_pointer(&keep));
  return vm_plan_attachment_disk(vm->env->node, obj, NULL);
}

/* The directories from the node's disk directory (from its state directory when the disks
 * live there, as by default) down to dir, made (0750) and let through for QEMU's group
 * (0710: x, no listing): a disk the node never had may be the first in its namespace, and
 * vmletd made its state directory 0700 for its records. */
static gboolean disk_dirs(VmletVm *vm, const char *dir, GError **error)
{
  if (g_mkdir_with_parents(dir, 0750) < 0)
    return mig_in_refuse(error, VMLET_MIG_ERROR_DISK, "%s: %s", dir, g_strerror(errno));
  VmletConfine *c = vm_confinement(vm, error);
  if (!c)
    return FALSE;
  const VmletNode *node = vm->env->node;
  const char *top = g_str_has_prefix(node->disk_dir, node->state_dir) ? node->state_dir
                                                                      : node->disk_dir;
  g_autoptr(GPtrArray) levels = g_ptr_array_new_with_free_func(g_free);
  for (char *d = g_strdup(dir); d; ) {
    if (!g_str_has_prefix(d, top) || strlen(d) < strlen(top)) {
      g_free(d);
      break;
    }
    g_ptr_array_add(levels, d);
    d = strlen(d) > strlen(top) ? g_path_get_dirname(d) : NULL;
  }
  /* Top down: each level's check walks the ones above it. */
  for (guint i = levels->len; i-- > 0;)
    if (!vmlet_qemu_access_traverse_dir(levels->pdata[i], c, error))
      return FALSE;
  return TRUE;
}

static gboolean create_image(VmletVm *vm, const char *path, VmletImageFormat format,
                             guint64 size, GError **error)
{
  g_autofree char *dir = g_path_get_dirname(path);
  if (!disk_dirs(vm, dir, error))
    return FALSE;
  g_autofree char *bytes = g_strdup_printf("%" G_GUINT64_FORMAT, size);
  const char *argv[] = {"qemu-img", "create", "-q", "-f", vmlet_image_format_name(format),
                        path, bytes, NULL};
  g_autofree char *err = NULL;
  int status = 0;
  /* qemu-img creates an empty image in a few ms; the copy comes over NBD. */
  if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                    NULL, NULL, NULL, &err, &status, NULL) ||
      !g_spawn_check_wait_status(status, NULL))
    return mig_in_refuse(error, VMLET_MIG_ERROR_DISK, "creating %s: %s", path,
                err && *err ? g_strstrip(err) : "qemu-img failed");
  return TRUE;
}

gboolean mig_in_take_disk(VmMigIn *m, JsonObject *d, GError **error)
{
  static const char *const kinds[] = {"VirtualDisk", "VirtualImage", "ClusterVirtualImage",
                                      NULL};
  static const char *const formats[] = {"qcow2", "raw", "iso", NULL};
  g_autoptr(VmletDiag) diag = vmlet_diag_new("disk");
  guint kind = 0, format = 0;
  const char *name = NULL, *fingerprint = NULL;
  gint64 size = 0;
  gboolean ro = FALSE;
  jv_get_enum(diag, d, "disks[]", "kind", JV_REQUIRED, kinds, &kind);
  vmlet_get_name(diag, d, "disks[]", "name", JV_REQUIRED, &name);
  jv_get_enum(diag, d, "disks[]", "format", JV_REQUIRED, formats, &format);
  jv_get_bool(diag, d, "disks[]", "readOnly", JV_REQUIRED, &ro);
  jv_get_int(diag, d, "disks[]", "virtualSize", JV_REQUIRED, 0, G_MAXINT64, &size);
  jv_get_string(diag, d, "disks[]", "fingerprint", JV_OPTIONAL, 64, &fingerprint);
  if (!vmlet_diag_check(diag, error)) {
    (*error)->domain = VMLET_MIG_ERROR;
    (*error)->code = VMLET_MIG_ERROR_INVALID;
    return FALSE;
  }
  g_autoptr(VmPlanDisk) pd = place(m, d, (VmBlockKind)kind, name, error);
  if (!pd)
    return FALSE;
  /* The image is made, and compared, as QEMU will open it here. */
  if (pd->format != (VmletImageFormat)format)
    return mig_in_refuse(error, VMLET_MIG_ERROR_DISK, "%s \"%s\": the source has it as %s, "
                         "this node as %s", kinds[kind], name, formats[format],
                         vmlet_image_format_name(pd->format));
  /* Whether QEMU writes it is this node's object's say, not the peer's: a peer calling a
   * written disk read-only would otherwise have it taken as the same image by its head. */
  if (pd->read_only != ro)
    return mig_in_refuse(error, VMLET_MIG_ERROR_DISK, "%s \"%s\": the source has it %s, this "
                         "node %s", kinds[kind], name, ro ? "read-only" : "writable",
                         pd->read_only ? "read-only" : "writable");
  const char *path = pd->path;
  VmMigDisk *md = g_new0(VmMigDisk, 1);
  md->kind = (VmBlockKind)kind;
  md->name = g_strdup(name);
  md->path = g_strdup(path);
  md->format = (VmletImageFormat)format;
  md->read_only = ro;
  md->virtual_size = (guint64)size;
  g_ptr_array_add(m->disks, md);
  guint64 here_size = 0;
  g_autofree char *here = NULL;
  g_autoptr(GError) probe = NULL;
  if (vm_mig_disk_probe(path, md->format, &here_size, &here, &probe)) {
    gboolean same = fingerprint && g_str_equal(here, fingerprint);
    /* Written disks: only the very file (the source's marker beside it) will do, whatever
     * the guest wrote meanwhile. Read-only images: a copy with the same size and head is
     * the same image. */
    if (ro ? same : vm_mig_marker_matches(path, m->journal->id, m->marker_token)) {
      md->shared = TRUE;
      return TRUE;
    }
    if (same)
      return mig_in_refuse(error, VMLET_MIG_ERROR_DISK,
                  "%s \"%s\": %s exists on this node but is a copy, not on storage the "
                  "source shares (no marker of the source beside it; a disk left by an "
                  "earlier migration?): refusing to overwrite it - move it away to let the "
                  "migration copy the disk", kinds[kind], name, path);
    return mig_in_refuse(error, VMLET_MIG_ERROR_DISK,
                "%s \"%s\": %s exists on this node with other content (not the source's "
                "file): refusing to overwrite it", kinds[kind], name, path);
  }
  if (!g_error_matches(probe, VMLET_ERROR, VMLET_ERROR_NOT_FOUND))
    return mig_in_refuse(error, VMLET_MIG_ERROR_DISK, "%s", probe->message);
  if (ro)
    return mig_in_refuse(error, VMLET_MIG_ERROR_DISK,
                "%s \"%s\": not on this node at %s (images are not copied: put the same file "
                "there, or on storage both nodes share)", kinds[kind], name, path);
  if (!create_image(m->vm, path, md->format, md->virtual_size, error))
    return FALSE;
  md->created = TRUE;
  g_ptr_array_add(m->journal->created, g_strdup(path));
  return TRUE;
}
