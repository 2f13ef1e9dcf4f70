/* VirtualMachineBlockDeviceAttachments: thin handlers over the manager and
 * actions-attachment.c. */
#include "handlers.h"

#include "actions.h"
#include "errors.h"
#include "respond.h"

/* Every attachment (args->ns NULL) or a namespace's, as a List; those still being detached
 * after their drop-in went are included. */
void vmlet_handle_list_attachments(VmletCall *call)
{
  JsonArray *items = json_array_new();
  g_autoptr(GPtrArray) atts = vmlet_manager_attachments(call->mgr, call->args->ns);
  for (guint i = 0; i < atts->len; i++)
    json_array_add_element(items, json_node_ref(atts->pdata[i]));
  vmlet_respond_list(call->msg, items);
}

void vmlet_handle_get_attachment(VmletCall *call)
{
  const VmletRouteArgs *a = call->args;
  g_autoptr(JsonNode) att = vmlet_manager_attachment(call->mgr, a->ns, a->name);
  if (!att) {
    g_autoptr(GError) error = NULL;
    vmlet_api_set_not_found(&error, VMLET_RESOURCE_VMBDAS, a->ns, a->name);
    vmlet_respond_error(call->msg, error);
    return;
  }
  vmlet_respond_json(call->msg, 200, att);
}

static void on_attachment_created(GObject *source, GAsyncResult *res, gpointer data)
{
  g_autoptr(SoupServerMessage) msg = data;
  g_autoptr(GError) error = NULL;
  gboolean created = FALSE;
  JsonNode *att = vmlet_action_create_attachment_finish(res, &created, &error);
  vmlet_respond_result(msg, created ? 201 : 200, att, error);
  soup_server_message_unpause(msg);
}

/* 201 with the attachment (usually InProgress) once its drop-in is on disk; 200 for the
 * same one again. */
void vmlet_handle_put_attachment(VmletCall *call)
{
  g_autoptr(GBytes) body = vmlet_call_body(call);
  /* The answer comes from the main loop later: the write runs in a worker thread. */
  soup_server_message_pause(call->msg);
  vmlet_action_create_attachment(call->mgr, call->args->ns, call->args->name, body,
                                 on_attachment_created, g_object_ref(call->msg));
}

void vmlet_handle_delete_attachment(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  if (vmlet_action_delete_attachment(call->mgr, call->args->ns, call->args->name, &error))
    vmlet_respond_status(call->msg, 200, "Deleted",
                         "deletion started: the attachment is Terminating until the guest has "
                         "released the device");
  else
    vmlet_respond_error(call->msg, error);
}
