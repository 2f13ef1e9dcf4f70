/* The prepare request, as the source builds it (docs/MIGRATION.md has the whole protocol):
 *
 *   {"id", "generation", "source",
 *    "vm":          the VirtualMachine (metadata and spec with its defaults),
 *    "disks":       [{kind, name, deviceId, format, readOnly, virtualSize, fingerprint, path,
 *                     manifest}] each disk and image, with its drop-in document,
 *    "attachments": [the VM's VirtualMachineBlockDeviceAttachments],
 *    "record":      {startedSpec, provisioningDigest, hotplugged, machine, restarts,
 *                    createdUs}: what keeps the VM's status continuous,
 *    "files":       {provisioning, nvram}: base64, carried rather than rebuilt,
 *    "capabilities": {autoConverge, multifdChannels}: the same on both ends} */
#include "vm-migrate-out.h"

#include <string.h>

#include "fileio.h"
#include "jsonval.h"
#include "meta.h"

/* The seed ISO is at most a few hundred KiB; OVMF's 4M variable store is 528 KiB. */
#define CARRIED_FILE_MAX (4 * 1024 * 1024)

static JsonNode *string_map_node(GHashTable *map)
{
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, jv_object_from_strings(map));
  return n;
}

/* The VirtualMachine as a drop-in document: what the destination writes once it owns it. */
JsonNode *vm_manifest(VmletVm *vm)
{
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "apiVersion", VMLET_API_GROUP "/v1alpha2");
  json_object_set_string_member(root, "kind", "VirtualMachine");
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", vm->name);
  json_object_set_string_member(md, "namespace", vm->namespace);
  if (vm->spec->meta.uid)
    json_object_set_string_member(md, "uid", vm->spec->meta.uid);
  json_object_set_member(md, "labels", string_map_node(vm->spec->meta.labels));
  json_object_set_member(md, "annotations", string_map_node(vm->spec->meta.annotations));
  json_object_set_object_member(root, "metadata", md);
  json_object_set_member(root, "spec", json_node_copy(vm->spec->spec_json));
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, root);
  return n;
}

static gboolean carry_file(JsonObject *files, const char *key, const char *path,
                           GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, CARRIED_FILE_MAX, &data, &len, error))
    return FALSE;
  g_autofree char *b64 = g_base64_encode((const guchar *)data, len);
  json_object_set_string_member(files, key, b64);
  return TRUE;
}

static JsonArray *disks_json(VmMigOut *m)
{
  JsonArray *arr = json_array_new();
  for (guint i = 0; i < m->disks->len; i++) {
    const VmMigDisk *d = m->disks->pdata[i];
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "kind", vm_block_kind_name(d->kind));
    json_object_set_string_member(o, "name", d->name);
    json_object_set_string_member(o, "deviceId", d->plan->device_id);
    json_object_set_string_member(o, "format", vmlet_image_format_name(d->format));
    json_object_set_boolean_member(o, "readOnly", d->read_only);
    json_object_set_int_member(o, "virtualSize", (gint64)d->virtual_size);
    if (d->fingerprint)
      json_object_set_string_member(o, "fingerprint", d->fingerprint);
    json_object_set_string_member(o, "path", d->path);
    VmletBlockObject *obj = vmlet_inventory_block(m->vm->env->inv, d->kind, m->vm->namespace,
                                                  d->name);
    if (obj)
      /* With its own path, if it has one: shared storage is mounted at the same place. */
      json_object_set_member(o, "manifest", vmlet_block_object_manifest(obj, obj->path));
    json_array_add_object_element(arr, o);
  }
  return arr;
}

static JsonArray *attachments_json(VmMigOut *m)
{
  JsonArray *arr = json_array_new();
  g_autoptr(GPtrArray) atts = vmlet_inventory_attachments(m->vm->env->inv);
  for (guint i = 0; i < atts->len; i++) {
    VmletAttachment *att = atts->pdata[i];
    if (g_str_equal(att->meta.namespace, m->vm->namespace) &&
        g_str_equal(att->vm_name, m->vm->name))
      json_array_add_element(arr, vmlet_attachment_manifest(att));
  }
  return arr;
}

static JsonObject *record_json(const VmletVmRecord *r)
{
  JsonObject *o = json_object_new();
  if (r->started_spec)
    json_object_set_member(o, "startedSpec", json_node_copy(r->started_spec));
  if (r->provisioning_digest)
    json_object_set_string_member(o, "provisioningDigest", r->provisioning_digest);
  if (r->hotplugged)
    json_object_set_member(o, "hotplugged", json_node_copy(r->hotplugged));
  if (r->machine) {
    JsonObject *mach = json_object_new();
    json_object_set_string_member(mach, "alias", r->machine_alias ? r->machine_alias : "");
    json_object_set_string_member(mach, "resolved", r->machine);
    json_object_set_object_member(o, "machine", mach);
  }
  json_object_set_int_member(o, "restarts", r->restarts);
  json_object_set_boolean_member(o, "stoppedManually", r->stopped_manually);
  json_object_set_int_member(o, "createdUs", r->created_us);
  return o;
}

JsonNode *mig_out_prepare_request(VmMigOut *m, GError **error)
{
  VmletVm *vm = m->vm;
  const VmPlan *plan = vm->plan;
  JsonObject *files = json_object_new();
  for (guint i = 0; i < plan->disks->len; i++) {
    const VmPlanDisk *d = plan->disks->pdata[i];
    if (!d->is_ref && !carry_file(files, "provisioning", d->path, error)) {
      json_object_unref(files);
      return NULL;
    }
  }
  if (plan->ovmf_vars && !carry_file(files, "nvram", plan->ovmf_vars, error)) {
    json_object_unref(files);
    return NULL;
  }
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", m->journal->id);
  json_object_set_int_member(o, "generation", (gint64)m->journal->generation);
  json_object_set_string_member(o, "source", vm->env->node->name);
  json_object_set_member(o, "vm", vm_manifest(vm));
  json_object_set_array_member(o, "disks", disks_json(m));
  json_object_set_array_member(o, "attachments", attachments_json(m));
  json_object_set_object_member(o, "record", record_json(vm->rec));
  json_object_set_object_member(o, "files", files);
  JsonObject *caps = json_object_new();
  json_object_set_boolean_member(caps, "autoConverge", m->auto_converge);
  json_object_set_int_member(caps, "multifdChannels",
                             vm->env->node->migration.multifd_channels);
  json_object_set_object_member(o, "capabilities", caps);
  json_object_set_string_member(o, "sharedMarker", m->marker_token);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}
