#include "attachment.h"

#include "jsonval.h"

static const char *const api_versions[] = {VMLET_API_GROUP "/v1alpha2", NULL};
static const char *const kind_names[] = {"VirtualDisk", "VirtualImage", "ClusterVirtualImage",
                                         NULL};
static const char *const phase_names[] = {"Pending", "InProgress", "Attached", "Failed",
                                          "Terminating"};

const char *vmbda_phase_name(VmbdaPhase phase)
{
  return phase_names[phase];
}

VmbdaProblem *vmbda_problem_new(VmbdaReason reason, const char *fmt, ...)
{
  VmbdaProblem *p = g_new0(VmbdaProblem, 1);
  p->reason = reason;
  va_list ap;
  va_start(ap, fmt);
  p->message = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  return p;
}

void vmbda_problem_free(VmbdaProblem *p)
{
  if (!p)
    return;
  g_free(p->message);
  g_free(p);
}

VmbdaPhase vmbda_problem_phase(const VmbdaProblem *p)
{
  switch (p->reason) {
  case VMBDA_REASON_VM_NOT_READY:
  case VMBDA_REASON_BLOCK_NOT_READY:
  case VMBDA_REASON_NONE:
  case VMBDA_REASON_REQUEST_SENT:
    return VMBDA_PHASE_PENDING;
  case VMBDA_REASON_CONFLICT:
  case VMBDA_REASON_CAPACITY_REACHED:
  case VMBDA_REASON_HOTPLUG_FAILED:
    return VMBDA_PHASE_FAILED;
  case VMBDA_REASON_DETACH_PENDING:
    return VMBDA_PHASE_TERMINATING;
  }
  return VMBDA_PHASE_PENDING;
}

VmletAttachment *vmlet_attachment_ref(VmletAttachment *att)
{
  g_atomic_int_inc(&att->refcount);
  return att;
}

void vmlet_attachment_unref(VmletAttachment *att)
{
  if (!att || !g_atomic_int_dec_and_test(&att->refcount))
    return;
  vmlet_meta_clear(&att->meta);
  g_free(att->vm_name);
  g_free(att->block_name);
  g_free(att);
}

VmletAttachment *vmlet_attachment_new(const char *namespace, const char *name,
                                      const char *vm_name, VmBlockKind kind,
                                      const char *block_name)
{
  VmletAttachment *att = g_new0(VmletAttachment, 1);
  att->refcount = 1;
  att->meta.name = g_strdup(name);
  att->meta.namespace = g_strdup(namespace);
  att->meta.labels = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  att->meta.annotations = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  att->vm_name = g_strdup(vm_name);
  att->kind = kind;
  att->block_name = g_strdup(block_name);
  return att;
}

gboolean vmlet_attachment_same_spec(const VmletAttachment *a, const VmletAttachment *b)
{
  return g_str_equal(a->meta.namespace, b->meta.namespace) &&
         g_str_equal(a->vm_name, b->vm_name) && a->kind == b->kind &&
         g_str_equal(a->block_name, b->block_name);
}

/* metadata.creationTimestamp as kubectl prints it; anything else is ignored (the daemon
 * then shows when it first saw the attachment). */
static gint64 creation_time(VmletDiag *d, JsonObject *root)
{
  JsonNode *md = json_object_get_member(root, "metadata");
  if (!md || !JSON_NODE_HOLDS_OBJECT(md))
    return 0;
  const char *ts = NULL;
  if (!jv_get_string(d, json_node_get_object(md), "metadata", "creationTimestamp", JV_OPTIONAL,
                     64, &ts))
    return 0;
  g_autoptr(GDateTime) dt = g_date_time_new_from_iso8601(ts, NULL);
  return dt ? g_date_time_to_unix(dt) * G_USEC_PER_SEC : 0;
}

VmletAttachment *vmlet_attachment_parse(JsonObject *root, VmletDiag *d)
{
  g_autoptr(VmletAttachment) att = g_new0(VmletAttachment, 1);
  att->refcount = 1;
  guint errors_before = d->errors->len;
  vmlet_meta_parse(d, root, VMLET_KIND_NAME_VMBDA, api_versions, &att->meta);
  att->created_us = creation_time(d, root);
  JsonObject *spec = NULL;
  if (jv_get_object(d, root, "", "spec", JV_REQUIRED, &spec)) {
    static const char *const known[] = {"virtualMachineName", "blockDeviceRef", NULL};
    jv_warn_unknown(d, spec, "spec", known);
    const char *vm = NULL;
    if (vmlet_get_name(d, spec, "spec", "virtualMachineName", JV_REQUIRED, &vm))
      att->vm_name = g_strdup(vm);
    JsonObject *ref = NULL;
    if (jv_get_object(d, spec, "spec", "blockDeviceRef", JV_REQUIRED, &ref)) {
      static const char *const ref_known[] = {"kind", "name", NULL};
      jv_warn_unknown(d, ref, "spec.blockDeviceRef", ref_known);
      guint kind = 0;
      const char *name = NULL;
      if (jv_get_enum(d, ref, "spec.blockDeviceRef", "kind", JV_REQUIRED, kind_names, &kind))
        att->kind = (VmBlockKind)kind;
      if (vmlet_get_name(d, ref, "spec.blockDeviceRef", "name", JV_REQUIRED, &name))
        att->block_name = g_strdup(name);
    }
  }
  if (d->errors->len != errors_before)
    return NULL;
  return g_steal_pointer(&att);
}

/* The Attached condition's reason for a phase and a cause. */
static const char *attached_reason(const VmbdaStatus *st)
{
  switch (st->reason) {
  case VMBDA_REASON_CONFLICT:
    return "Conflict";
  case VMBDA_REASON_HOTPLUG_FAILED:
    return "HotplugFailed";
  case VMBDA_REASON_REQUEST_SENT:
    return "AttachmentRequestSent";
  case VMBDA_REASON_DETACH_PENDING:
    return "DetachPending";
  case VMBDA_REASON_NONE:
  case VMBDA_REASON_VM_NOT_READY:
  case VMBDA_REASON_BLOCK_NOT_READY:
  case VMBDA_REASON_CAPACITY_REACHED:
    break;
  }
  return st->phase == VMBDA_PHASE_ATTACHED ? "Attached" : "NotAttached";
}

static JsonArray *conditions(const VmbdaStatus *st)
{
  JsonArray *arr = json_array_new();
  switch (st->reason) {
  case VMBDA_REASON_VM_NOT_READY:
    vmlet_condition_add(arr, "VirtualMachineReady", FALSE, "VirtualMachineNotReady",
                        st->message);
    break;
  case VMBDA_REASON_BLOCK_NOT_READY:
    vmlet_condition_add(arr, "BlockDeviceReady", FALSE, "BlockDeviceNotReady", st->message);
    break;
  case VMBDA_REASON_CAPACITY_REACHED:
    vmlet_condition_add(arr, "DiskAttachmentCapacityAvailableType", FALSE, "CapacityReached",
                        st->message);
    break;
  case VMBDA_REASON_NONE:
  case VMBDA_REASON_CONFLICT:
  case VMBDA_REASON_HOTPLUG_FAILED:
  case VMBDA_REASON_REQUEST_SENT:
  case VMBDA_REASON_DETACH_PENDING:
    break;
  }
  /* Attached always carries the why, so one condition tells the whole story. */
  vmlet_condition_add(arr, "Attached", st->phase == VMBDA_PHASE_ATTACHED, attached_reason(st),
                      st->message);
  return arr;
}

static JsonObject *object_base(const VmletAttachment *att, gint64 created_us)
{
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "apiVersion", VMLET_API_GROUP "/v1alpha2");
  json_object_set_string_member(root, "kind", VMLET_KIND_NAME_VMBDA);
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", att->meta.name);
  json_object_set_string_member(md, "namespace", att->meta.namespace);
  gint64 created = att->created_us ? att->created_us : created_us;
  if (created) {
    g_autofree char *ts = vmlet_timestamp(created);
    json_object_set_string_member(md, "creationTimestamp", ts);
  }
  if (att->meta.uid)
    json_object_set_string_member(md, "uid", att->meta.uid);
  json_object_set_object_member(root, "metadata", md);
  JsonObject *spec = json_object_new();
  json_object_set_string_member(spec, "virtualMachineName", att->vm_name);
  JsonObject *ref = json_object_new();
  json_object_set_string_member(ref, "kind", vm_block_kind_name(att->kind));
  json_object_set_string_member(ref, "name", att->block_name);
  json_object_set_object_member(spec, "blockDeviceRef", ref);
  json_object_set_object_member(root, "spec", spec);
  return root;
}

JsonNode *vmlet_attachment_to_json(const VmletAttachment *att, const VmbdaStatus *st)
{
  JsonObject *root = object_base(att, st->created_us);
  JsonObject *status = json_object_new();
  json_object_set_string_member(status, "phase", phase_names[st->phase]);
  json_object_set_string_member(status, "virtualMachineName", att->vm_name);
  json_object_set_array_member(status, "conditions", conditions(st));
  if (st->target)
    json_object_set_string_member(status, "target", st->target);
  json_object_set_object_member(root, "status", status);
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, root);
  return node;
}

JsonNode *vmlet_attachment_manifest(const VmletAttachment *att)
{
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, object_base(att, 0));
  return node;
}

JsonNode *vmlet_attachment_refused_json(const char *namespace, const char *name,
                                        const char *problems)
{
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "apiVersion", VMLET_API_GROUP "/v1alpha2");
  json_object_set_string_member(root, "kind", VMLET_KIND_NAME_VMBDA);
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", name);
  json_object_set_string_member(md, "namespace", namespace);
  json_object_set_object_member(root, "metadata", md);
  JsonObject *status = json_object_new();
  json_object_set_string_member(status, "phase", phase_names[VMBDA_PHASE_FAILED]);
  JsonArray *conds = json_array_new();
  vmlet_condition_add(conds, "Attached", FALSE, "InvalidSpec", problems);
  json_object_set_array_member(status, "conditions", conds);
  json_object_set_object_member(root, "status", status);
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, root);
  return node;
}
