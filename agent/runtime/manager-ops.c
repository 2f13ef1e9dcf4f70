/* VirtualMachineOperations across the node's VMs, and those that outlive their VM: an
 * Evict's result must still be there to read on the source once the VM runs elsewhere,
 * as a deleted VM's last Stop is. Kept in memory, the newest MGR_DEPARTED_MAX. */
#include "manager-private.h"

#include "jsonval.h"

/* 64 operations of about 400 bytes: 25 KiB at most, enough for a drained node's VMs. */
#define MGR_DEPARTED_MAX 64

void mgr_keep_departed_ops(VmletManager *mgr, VmletVm *vm)
{
  g_autoptr(JsonNode) ops = vmlet_vm_operations_json(vm);
  JsonArray *arr = json_node_get_array(ops);
  for (guint i = 0; i < json_array_get_length(arr); i++)
    g_queue_push_tail(mgr->departed_ops, json_node_copy(json_array_get_element(arr, i)));
  while (g_queue_get_length(mgr->departed_ops) > MGR_DEPARTED_MAX)
    json_node_unref(g_queue_pop_head(mgr->departed_ops));
}

static gboolean in_namespace(JsonNode *op, const char *ns)
{
  return g_strcmp0(jv_string_path(json_node_get_object(op), "metadata.namespace"), ns) == 0;
}

static gboolean named(JsonNode *op, const char *name)
{
  return g_strcmp0(jv_string_path(json_node_get_object(op), "metadata.name"), name) == 0;
}

JsonArray *vmlet_manager_operations(VmletManager *mgr, const char *ns)
{
  JsonArray *items = json_array_new();
  for (GList *l = mgr->departed_ops->head; l; l = l->next)
    if (in_namespace(l->data, ns))
      json_array_add_element(items, json_node_copy(l->data));
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++) {
    if (!g_str_equal(ns, vmlet_vm_get_namespace(vms->pdata[i])))
      continue;
    g_autoptr(JsonNode) ops = vmlet_vm_operations_json(vms->pdata[i]);
    JsonArray *arr = json_node_get_array(ops);
    for (guint j = 0; j < json_array_get_length(arr); j++)
      json_array_add_element(items, json_node_copy(json_array_get_element(arr, j)));
  }
  return items;
}

JsonNode *vmlet_manager_operation(VmletManager *mgr, const char *ns, const char *name)
{
  g_autoptr(JsonArray) all = vmlet_manager_operations(mgr, ns);
  for (guint i = 0; i < json_array_get_length(all); i++)
    if (named(json_array_get_element(all, i), name))
      return json_node_copy(json_array_get_element(all, i));
  return NULL;
}

gboolean vmlet_manager_delete_operation(VmletManager *mgr, const char *ns, const char *name)
{
  for (GList *l = mgr->departed_ops->head; l; l = l->next)
    if (in_namespace(l->data, ns) && named(l->data, name)) {
      json_node_unref(l->data);
      g_queue_delete_link(mgr->departed_ops, l);
      return TRUE;
    }
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++)
    if (g_str_equal(ns, vmlet_vm_get_namespace(vms->pdata[i])) &&
        vmlet_vm_delete_operation(vms->pdata[i], name))
      return TRUE;
  return FALSE;
}
