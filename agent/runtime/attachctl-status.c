/* The record of plugged devices (kept in the VM's record) and the DVP-shaped status. */
#include "attachctl-private.h"

#include <string.h>

#include "jsonval.h"

/* ---- the record ---- */

static const char *const bus_names[] = {"virtio", "sata", "scsi"};

JsonNode *vmlet_attach_ctl_record(VmletAttachCtl *ctl)
{
  JsonArray *arr = json_array_new();
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  names = g_list_sort(names, (GCompareFunc)strcmp);
  for (GList *l = names; l; l = l->next) {
    HotEntry *e = g_hash_table_lookup(ctl->entries, l->data);
    /* An unconfirmed attach is not recorded: after a crash, QEMU itself says whether the
     * device made it (vmlet_attach_ctl_activate). */
    if (e->state == HOT_ATTACHING)
      continue;
    const VmPlanDisk *d = e->disk;
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "attachment", e->att->meta.name);
    json_object_set_string_member(o, "kind", vm_block_kind_name(d->kind));
    json_object_set_string_member(o, "name", d->name);
    json_object_set_string_member(o, "state", hot_state_names[e->state]);
    json_object_set_string_member(o, "deviceId", d->device_id);
    json_object_set_string_member(o, "nodePrefix", d->node_prefix);
    json_object_set_string_member(o, "path", d->path);
    json_object_set_string_member(o, "format", vmlet_image_format_name(d->format));
    json_object_set_boolean_member(o, "readOnly", d->read_only);
    json_object_set_boolean_member(o, "cdrom", d->cdrom);
    json_object_set_boolean_member(o, "hostDevice", d->host_device);
    json_object_set_string_member(o, "bus", bus_names[d->bus]);
    json_object_set_int_member(o, "slot", d->slot);
    json_object_set_int_member(o, "createdUs", e->created_us);
    json_array_add_object_element(arr, o);
  }
  JsonNode *node = json_node_new(JSON_NODE_ARRAY);
  json_node_take_array(node, arr);
  return node;
}

gboolean vmlet_attach_ctl_load(VmletAttachCtl *ctl, JsonNode *record, GError **error)
{
  if (!record)
    return TRUE;
  g_autoptr(VmletDiag) d = vmlet_diag_new("hotplugged");
  JsonArray *arr = JSON_NODE_HOLDS_ARRAY(record) ? json_node_get_array(record) : NULL;
  if (!arr) {
    vmlet_diag_error(d, NULL, "expected an array");
    return vmlet_diag_check(d, error);
  }
  static const char *const kinds[] = {"VirtualDisk", "VirtualImage", "ClusterVirtualImage",
                                      NULL};
  static const char *const formats[] = {"qcow2", "raw", "iso", NULL};
  static const char *const buses[] = {"virtio", "sata", "scsi", NULL};
  for (guint i = 0; i < json_array_get_length(arr) && i < VM_MAX_BLOCK_DEVICES; i++) {
    g_autofree char *p = g_strdup_printf("hotplugged[%u]", i);
    JsonObject *o = jv_element_object(d, arr, i, p, "an object");
    if (!o)
      continue;
    const char *att = NULL, *name = NULL, *state = NULL, *dev = NULL, *prefix = NULL,
               *path = NULL;
    guint kind = 0, format = 0, bus = 0;
    gint64 slot = 0, created = 0;
    gboolean ro = FALSE, cdrom = FALSE, host = FALSE;
    guint before = d->errors->len;
    vmlet_get_name(d, o, p, "attachment", JV_REQUIRED, &att);
    jv_get_enum(d, o, p, "kind", JV_REQUIRED, kinds, &kind);
    vmlet_get_name(d, o, p, "name", JV_REQUIRED, &name);
    jv_get_string(d, o, p, "state", JV_REQUIRED, 16, &state);
    jv_get_string(d, o, p, "deviceId", JV_REQUIRED, 128, &dev);
    jv_get_string(d, o, p, "nodePrefix", JV_REQUIRED, 26, &prefix);
    jv_get_string(d, o, p, "path", JV_REQUIRED, 4096, &path);
    jv_get_enum(d, o, p, "format", JV_REQUIRED, formats, &format);
    jv_get_bool(d, o, p, "readOnly", JV_REQUIRED, &ro);
    jv_get_bool(d, o, p, "cdrom", JV_REQUIRED, &cdrom);
    jv_get_bool(d, o, p, "hostDevice", JV_OPTIONAL, &host);
    jv_get_enum(d, o, p, "bus", JV_REQUIRED, buses, &bus);
    jv_get_int(d, o, p, "slot", JV_REQUIRED, 0, 63, &slot);
    jv_get_int(d, o, p, "createdUs", JV_OPTIONAL, 0, G_MAXINT64, &created);
    HotState st = HOT_ATTACHED;
    for (guint s = 0; state && s < G_N_ELEMENTS(hot_state_names); s++)
      if (g_str_equal(state, hot_state_names[s]))
        st = (HotState)s;
    if (d->errors->len != before)
      continue;
    VmPlanDisk *disk = g_new0(VmPlanDisk, 1);
    disk->kind = (VmBlockKind)kind;
    disk->name = g_strdup(name);
    disk->device_id = g_strdup(dev);
    disk->node_prefix = g_strdup(prefix);
    disk->path = g_strdup(path);
    disk->format = (VmletImageFormat)format;
    disk->read_only = ro;
    disk->cdrom = cdrom;
    disk->host_device = host;
    disk->bus = (VmDiskBus)bus;
    disk->slot = (guint)slot;
    disk->attachment = g_strdup(att);
    /* The drop-in may be gone (detached while vmletd was away): keep what the record says. */
    VmletAttachment *want = ctl_find_desired(ctl, att);
    g_autoptr(VmletAttachment) stand_in =
        vmlet_attachment_new(ctl->namespace, att, ctl->vm_name, disk->kind, name);
    HotEntry *e = ctl_add_entry(ctl, want && want->kind == disk->kind &&
                                         g_str_equal(want->block_name, name)
                                     ? want
                                     : stand_in,
                            disk, st);
    if (created)
      e->created_us = created;
  }
  return vmlet_diag_check(d, error);
}

/* ---- status ---- */

static gint64 created_for(VmletAttachCtl *ctl, const char *name)
{
  HotEntry *e = g_hash_table_lookup(ctl->entries, name);
  if (e)
    return e->created_us;
  gint64 *seen = g_hash_table_lookup(ctl->first_seen, name);
  return seen ? *seen : 0;
}

gboolean vmlet_attach_ctl_status(VmletAttachCtl *ctl, const char *name, VmbdaStatus *out)
{
  VmletAttachment *want = ctl_find_desired(ctl, name);
  HotEntry *e = g_hash_table_lookup(ctl->entries, name);
  if (!want && !e)
    return FALSE;
  *out = (VmbdaStatus){.created_us = created_for(ctl, name)};
  if (e && e->cleanup) {
    out->phase = VMBDA_PHASE_IN_PROGRESS;
    out->reason = VMBDA_REASON_REQUEST_SENT;
    out->message = e->message ? e->message
                              : "removing block nodes an interrupted attach left in QEMU";
    return TRUE;
  }
  if (e && (!want || !vmlet_attachment_same_spec(want, e->att) || e->state == HOT_DETACHING ||
            e->state == HOT_RELEASING)) {
    /* On its way out (possibly to come back with another disk). */
    out->phase = VMBDA_PHASE_TERMINATING;
    out->reason = VMBDA_REASON_DETACH_PENDING;
    out->message = e->message;
    out->target = e->disk->device_id;
    return TRUE;
  }
  if (e) {
    switch (e->state) {
    case HOT_ATTACHING:
      out->phase = VMBDA_PHASE_IN_PROGRESS;
      out->reason = VMBDA_REASON_REQUEST_SENT;
      out->message = e->message;
      break;
    case HOT_ATTACHED:
      out->phase = VMBDA_PHASE_ATTACHED;
      out->target = e->disk->device_id;
      break;
    case HOT_DETACHING:
    case HOT_RELEASING:
      break;
    }
    return TRUE;
  }
  const VmbdaProblem *p = g_hash_table_lookup(ctl->conflicts, name);
  if (!p)
    p = g_hash_table_lookup(ctl->failures, name);
  if (!p && ctl->not_running) {
    out->phase = VMBDA_PHASE_PENDING;
    out->reason = VMBDA_REASON_VM_NOT_READY;
    out->message = ctl->not_running;
    return TRUE;
  }
  if (!p)
    p = g_hash_table_lookup(ctl->waiting, name);
  if (p) {
    out->phase = vmbda_problem_phase(p);
    out->reason = p->reason;
    out->message = p->message;
    return TRUE;
  }
  /* Wanted, nothing against it: about to be plugged once QMP is read. */
  out->phase = VMBDA_PHASE_PENDING;
  out->reason = VMBDA_REASON_VM_NOT_READY;
  out->message = "waiting for vmletd to read the VM's devices over QMP";
  return TRUE;
}

GPtrArray *vmlet_attach_ctl_terminating(VmletAttachCtl *ctl)
{
  GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_attachment_unref);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, ctl->entries);
  while (g_hash_table_iter_next(&it, &k, &v))
    if (!ctl_find_desired(ctl, k))
      g_ptr_array_add(out, vmlet_attachment_ref(((HotEntry *)v)->att));
  return out;
}

gboolean vmlet_attach_ctl_holds(VmletAttachCtl *ctl, const char *name)
{
  return g_hash_table_contains(ctl->entries, name);
}

void vmlet_attach_ctl_block_refs(VmletAttachCtl *ctl, JsonArray *into)
{
  g_autoptr(GList) names = g_hash_table_get_keys(ctl->entries);
  names = g_list_sort(names, (GCompareFunc)strcmp);
  for (GList *l = names; l; l = l->next) {
    HotEntry *e = g_hash_table_lookup(ctl->entries, l->data);
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "kind", vm_block_kind_name(e->disk->kind));
    json_object_set_string_member(o, "name", e->disk->name);
    json_object_set_string_member(o, "target", e->disk->device_id);
    json_object_set_boolean_member(o, "attached",
                                   e->state == HOT_ATTACHED || e->state == HOT_DETACHING);
    json_object_set_boolean_member(o, "hotplugged", TRUE);
    json_object_set_string_member(o, "virtualMachineBlockDeviceAttachmentName",
                                  e->att->meta.name);
    json_array_add_object_element(into, o);
  }
}

