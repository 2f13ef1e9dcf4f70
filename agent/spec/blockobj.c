#include "blockobj.h"

#include <string.h>

#include "jsonval.h"
#include "quantity.h"

static const char *const api_versions[] = {VMLET_API_GROUP "/v1alpha2", NULL};
static const char *const format_names[] = {"qcow2", "raw", "iso", NULL};
static const char *const disk_format_names[] = {"qcow2", "raw", NULL};

const char *vmlet_image_format_name(VmletImageFormat format)
{
  return format_names[format];
}

const char *vmlet_image_format_extension(VmletImageFormat format)
{
  switch (format) {
  case VMLET_FORMAT_QCOW2:
    return "qcow2";
  case VMLET_FORMAT_RAW:
    return "img";
  case VMLET_FORMAT_ISO:
    return "iso";
  }
  return "img";
}

VmletBlockObject *vmlet_block_object_ref(VmletBlockObject *obj)
{
  g_atomic_int_inc(&obj->refcount);
  return obj;
}

void vmlet_block_object_unref(VmletBlockObject *obj)
{
  if (!obj || !g_atomic_int_dec_and_test(&obj->refcount))
    return;
  vmlet_meta_clear(&obj->meta);
  g_free(obj->path);
  g_free(obj->source_name);
  g_free(obj);
}

static gboolean format_from_extension(const char *path, VmletImageFormat *out)
{
  const char *dot = strrchr(path, '.');
  if (!dot || strchr(dot, '/'))
    return FALSE;
  if (!g_ascii_strcasecmp(dot, ".iso"))
    *out = VMLET_FORMAT_ISO;
  else if (!g_ascii_strcasecmp(dot, ".qcow2"))
    *out = VMLET_FORMAT_QCOW2;
  else if (!g_ascii_strcasecmp(dot, ".img") || !g_ascii_strcasecmp(dot, ".raw"))
    *out = VMLET_FORMAT_RAW;
  else
    return FALSE;
  return TRUE;
}

/* An absolute, normalised path: QEMU receives it inside JSON, and ".." or relative paths
 * in a drop-in would make the file a VM opens depend on the daemon's working directory. */
static gboolean check_path(VmletDiag *d, const char *p, const char *path)
{
  gboolean ok = path[0] == '/' && !strstr(path, "/../") && !g_str_has_suffix(path, "/..") &&
                !strstr(path, "/./") && !strstr(path, "//") && !g_str_has_suffix(path, "/");
  for (const char *c = path; ok && *c; c++)
    ok = (unsigned char)*c >= 0x20 && *c != 0x7f && *c != ',';
  if (!ok) {
    g_autofree char *q = vmlet_quote_for_message(path);
    vmlet_diag_error(d, p,
                     "expected an absolute normalised path without control characters or "
                     "commas, found %s",
                     q);
  }
  return ok;
}

VmletBlockObject *vmlet_block_object_parse(JsonObject *root, VmBlockKind kind, VmletDiag *d)
{
  g_autoptr(VmletBlockObject) obj = g_new0(VmletBlockObject, 1);
  obj->refcount = 1;
  obj->kind = kind;
  guint errors_before = d->errors->len;
  gboolean is_disk = kind == VM_BLOCK_VIRTUAL_DISK;

  vmlet_meta_parse(d, root, vm_block_kind_name(kind), api_versions, &obj->meta);
  JsonObject *spec = NULL;
  jv_get_object(d, root, "", "spec", JV_OPTIONAL, &spec);
  static const char *const disk_known[] = {"persistentVolumeClaim", "dataSource", "local", NULL};
  static const char *const image_known[] = {"storage", "dataSource", "persistentVolumeClaim",
                                            "local", NULL};
  if (spec)
    jv_warn_unknown(d, spec, "spec", is_disk ? disk_known : image_known);

  JsonObject *local = NULL;
  const char *path = NULL;
  guint fmt = 0;
  gboolean have_format = FALSE;
  if (spec && jv_get_object(d, spec, "spec", "local", JV_OPTIONAL, &local)) {
    static const char *const known[] = {"path", "format", NULL};
    jv_warn_unknown(d, local, "spec.local", known);
    if (jv_get_string(d, local, "spec.local", "path", JV_OPTIONAL, 1024, &path) &&
        check_path(d, "spec.local.path", path))
      obj->path = g_strdup(path);
    have_format = jv_get_enum(d, local, "spec.local", "format",
                              JV_OPTIONAL, is_disk ? disk_format_names : format_names, &fmt);
  }
  if (!have_format && !is_disk) {
    /* kubectl output of a ready image carries the format the cluster detected. */
    JsonObject *status = NULL;
    const char *sf = NULL;
    if (json_object_has_member(root, "status") &&
        jv_get_object(d, root, "", "status", JV_OPTIONAL, &status) &&
        jv_get_string(d, status, "status", "format", JV_OPTIONAL, 16, &sf) &&
        g_strv_contains(format_names, sf)) {
      for (fmt = 0; !g_str_equal(format_names[fmt], sf); fmt++)
        ;
      have_format = TRUE;
    }
  }
  if (!have_format && obj->path) {
    VmletImageFormat f;
    if (format_from_extension(obj->path, &f) && (!is_disk || f != VMLET_FORMAT_ISO)) {
      fmt = f;
      have_format = TRUE;
    }
  }
  if (!have_format && is_disk) {
    fmt = VMLET_FORMAT_QCOW2;
    have_format = TRUE;
  }
  if (!have_format)
    vmlet_diag_error(d, "spec.local.format",
                     "expected one of qcow2, raw, iso, found nothing (required: the format "
                     "cannot be inferred from status.format or the file name)");
  obj->format = (VmletImageFormat)fmt;

  if (is_disk && spec) {
    JsonObject *pvc = NULL;
    if (jv_get_object(d, spec, "spec", "persistentVolumeClaim", JV_OPTIONAL, &pvc)) {
      const char *size = NULL, *why = NULL;
      if (jv_get_string(d, pvc, "spec.persistentVolumeClaim", "size", JV_OPTIONAL, 40, &size) &&
          !vmlet_quantity_parse_bytes(size, &obj->size, &why)) {
        g_autofree char *q = vmlet_quote_for_message(size);
        vmlet_diag_error(d, "spec.persistentVolumeClaim.size", "expected %s, found %s", why, q);
      }
    }
    JsonObject *ds = NULL;
    if (jv_get_object(d, spec, "spec", "dataSource", JV_OPTIONAL, &ds)) {
      static const char *const ds_types[] = {"ObjectRef", "HTTP", "ContainerImage", "Upload",
                                             NULL};
      guint t = 0;
      JsonObject *ref = NULL;
      if (jv_get_enum(d, ds, "spec.dataSource", "type", JV_REQUIRED, ds_types, &t) && t != 0)
        vmlet_diag_warn(d, "spec.dataSource.type",
                        "%s sources are not fetched by vmlet; the disk file must already exist",
                        ds_types[t]);
      if (t == 0 &&
          jv_get_object(d, ds, "spec.dataSource", "objectRef", JV_REQUIRED, &ref)) {
        static const char *const ref_kinds[] = {"VirtualImage", "ClusterVirtualImage", NULL};
        guint rk = 0;
        const char *name = NULL;
        gboolean ok = jv_get_enum(d, ref, "spec.dataSource.objectRef", "kind", JV_REQUIRED,
                                  ref_kinds, &rk);
        ok = vmlet_get_name(d, ref, "spec.dataSource.objectRef", "name", JV_REQUIRED, &name) &&
             ok;
        if (ok) {
          obj->has_source = TRUE;
          obj->source_kind = rk == 0 ? VM_BLOCK_VIRTUAL_IMAGE : VM_BLOCK_CLUSTER_VIRTUAL_IMAGE;
          obj->source_name = g_strdup(name);
        }
      }
    }
  }
  if (d->errors->len != errors_before)
    return NULL;
  return g_steal_pointer(&obj);
}

JsonNode *vmlet_block_object_manifest(const VmletBlockObject *obj, const char *path)
{
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "apiVersion", VMLET_API_GROUP "/v1alpha2");
  json_object_set_string_member(root, "kind", vm_block_kind_name(obj->kind));
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", obj->meta.name);
  if (obj->kind != VM_BLOCK_CLUSTER_VIRTUAL_IMAGE)
    json_object_set_string_member(md, "namespace", obj->meta.namespace);
  json_object_set_object_member(md, "labels", jv_object_from_strings(obj->meta.labels));
  json_object_set_object_member(md, "annotations", jv_object_from_strings(obj->meta.annotations));
  json_object_set_object_member(root, "metadata", md);
  JsonObject *spec = json_object_new();
  if (obj->size) {
    JsonObject *pvc = json_object_new();
    g_autofree char *size = vmlet_quantity_format_bytes(obj->size);
    json_object_set_string_member(pvc, "size", size);
    json_object_set_object_member(spec, "persistentVolumeClaim", pvc);
  }
  JsonObject *local = json_object_new();
  if (path)
    json_object_set_string_member(local, "path", path);
  json_object_set_string_member(local, "format", vmlet_image_format_name(obj->format));
  json_object_set_object_member(spec, "local", local);
  json_object_set_object_member(root, "spec", spec);
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, root);
  return node;
}
