/* The node and its maintenance: GET /node, POST /node/drain {force, dryRun},
 * POST /node/uncordon. Thin over the manager (manager-drain.c, manager-node.c). */
#include "handlers.h"

#include "errors.h"
#include "jsonval.h"
#include "respond.h"
#include "vmlet-error.h"

void vmlet_handle_get_node(VmletCall *call)
{
  g_autoptr(JsonNode) n = vmlet_manager_node_json(call->mgr);
  vmlet_respond_json(call->msg, 200, n);
}

/* {force, dryRun}, both optional; an empty body is {}. */
static gboolean drain_options(GBytes *body, gboolean *force, gboolean *dry_run, GError **error)
{
  gsize len = 0;
  const char *data = body ? g_bytes_get_data(body, &len) : NULL;
  *force = *dry_run = FALSE;
  if (len == 0)
    return TRUE;
  g_autoptr(JsonNode) root = vmlet_json_parse("request", data, (gssize)len, error);
  if (!root) {
    (*error)->domain = VMLET_ERROR;
    (*error)->code = VMLET_ERROR_MALFORMED;
    return FALSE;
  }
  JsonObject *o = json_node_get_object(root);
  g_autoptr(VmletDiag) d = vmlet_diag_new("request");
  static const char *const known[] = {"force", "dryRun", NULL};
  jv_get_bool(d, o, "", "force", JV_OPTIONAL, force);
  jv_get_bool(d, o, "", "dryRun", JV_OPTIONAL, dry_run);
  jv_warn_unknown(d, o, "", known);
  if (d->warnings->len) /* an option misspelt must not drain with the defaults */
    vmlet_diag_error(d, "", "%s", (const char *)d->warnings->pdata[0]);
  return vmlet_diag_check(d, error);
}

void vmlet_handle_drain_node(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = vmlet_call_body(call);
  gboolean force = FALSE, dry_run = FALSE;
  if (!drain_options(body, &force, &dry_run, &error)) {
    vmlet_respond_error(call->msg, error);
    return;
  }
  if (dry_run) {
    g_autoptr(JsonNode) plan = vmlet_manager_drain_plan(call->mgr);
    vmlet_respond_json(call->msg, 200, plan);
    return;
  }
  if (!vmlet_manager_drain(call->mgr, force, &error)) {
    vmlet_respond_error(call->msg, error);
    return;
  }
  g_autoptr(JsonNode) n = vmlet_manager_node_json(call->mgr);
  vmlet_respond_json(call->msg, 200, n);
}

void vmlet_handle_uncordon_node(VmletCall *call)
{
  g_autoptr(GError) error = NULL;
  if (!vmlet_manager_uncordon(call->mgr, &error)) {
    vmlet_respond_error(call->msg, error);
    return;
  }
  g_autoptr(JsonNode) n = vmlet_manager_node_json(call->mgr);
  vmlet_respond_json(call->msg, 200, n);
}
