/* VirtualMachines and VirtualMachineOperations: thin handlers over the manager and
 * actions.c. */
#include "handlers.h"

#include <libsoup/soup.h>

#include "actions.h"
#include "errors.h"
#include "jsonval.h"
#include "respond.h"

/* Every VM (args->ns NULL) or a namespace's, as a List. */
void vmlet_handle_list_vms(VmletCall *call)
{
  const char *ns = call->args->ns;
  JsonArray *items = json_array_new();
  g_autoptr(GPtrArray) vms = vmlet_manager_list(call->mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmletVm *vm = vms->pdata[i];
    if (!ns || g_str_equal(ns, vmlet_vm_get_namespace(vm)))
      json_array_add_element(items, vmlet_vm_to_json(vm));
  }
  vmlet_respond_list(call->msg, items);
}

void vmlet_handle_get_vm(VmletCall *call)
{
  const VmletRouteArgs *a = call->args;
  VmletVm *vm = vmlet_manager_lookup(call->mgr, a->ns, a->name);
  if (!vm) {
    g_autoptr(GError) error = NULL;
    vmlet_api_set_not_found(&error, VMLET_RESOURCE_VMS, a->ns, a->name);
    vmlet_respond_error(call->msg, error);
    return;
  }
  g_autoptr(JsonNode) n = vmlet_vm_to_json(vm);
  vmlet_respond_json(call->msg, 200, n);
}

void vmlet_handle_put_vm(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = vmlet_call_body(call);
  JsonNode *vm = vmlet_action_apply_vm(call->mgr, call->args->ns, call->args->name, body, &error);
  vmlet_respond_result(call->msg, 200, vm, error);
}

void vmlet_handle_patch_vm(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = vmlet_call_body(call);
  JsonNode *vm = vmlet_action_patch_vm(call->mgr, call->args->ns, call->args->name, body, &error);
  vmlet_respond_result(call->msg, 200, vm, error);
}

void vmlet_handle_delete_vm(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  if (vmlet_action_delete_vm(call->mgr, call->args->ns, call->args->name, &error))
    vmlet_respond_status(call->msg, 200, "Deleted", "deletion started: the VM is Terminating");
  else
    vmlet_respond_error(call->msg, error);
}

typedef struct {
  SoupServerMessage *msg;
  gboolean pause;
} PauseCall;

static void on_paused(GObject *src, GAsyncResult *res, gpointer data)
{
  PauseCall *p = data;
  g_autoptr(SoupServerMessage) msg = p->msg;
  gboolean pause = p->pause;
  g_free(p);
  g_autoptr(GError) error = NULL;
  if (vmlet_action_pause_vm_finish(res, &error))
    vmlet_respond_status(msg, 202, "Accepted", pause ? "pause requested" : "unpause requested");
  else
    vmlet_respond_error(msg, error);
  soup_server_message_unpause(msg);
}

/* Answered once QEMU has: a failed stop or cont is said, not hidden behind a 202. */
static void pause_vm(VmletCall *call, gboolean pause)
{
  PauseCall *p = g_new0(PauseCall, 1);
  p->msg = g_object_ref(call->msg);
  p->pause = pause;
  soup_server_message_pause(call->msg);
  vmlet_action_pause_vm(call->mgr, call->args->ns, call->args->name, pause, on_paused, p);
}

void vmlet_handle_pause_vm(VmletCall *call)
{
  pause_vm(call, TRUE);
}

void vmlet_handle_unpause_vm(VmletCall *call)
{
  pause_vm(call, FALSE);
}

/* The namespace's operations: those of VMs gone from the node, then each VM's last 16. */
void vmlet_handle_list_operations(VmletCall *call)
{
  vmlet_respond_list(call->msg, vmlet_manager_operations(call->mgr, call->args->ns));
}

void vmlet_handle_create_operation(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = vmlet_call_body(call);
  JsonNode *op = vmlet_action_create_operation(call->mgr, call->args->ns, body, &error);
  vmlet_respond_result(call->msg, 201, op, error);
}

void vmlet_handle_get_operation(VmletCall *call)
{
  g_autoptr(JsonNode) op = vmlet_manager_operation(call->mgr, call->args->ns, call->args->name);
  if (op) {
    vmlet_respond_json(call->msg, 200, op);
    return;
  }
  g_autoptr(GError) error = NULL;
  vmlet_api_set_not_found(&error, VMLET_RESOURCE_OPERATIONS, call->args->ns, call->args->name);
  vmlet_respond_error(call->msg, error);
}

void vmlet_handle_delete_operation(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  if (vmlet_action_delete_operation(call->mgr, call->args->ns, call->args->name, &error))
    vmlet_respond_status(call->msg, 200, "Deleted",
                         "deleted (a migration it asked for is cancelled)");
  else
    vmlet_respond_error(call->msg, error);
}
