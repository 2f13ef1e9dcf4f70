/* The monitor's queries: run state, QOM, block nodes, machine; each reply checked for
 * its shape (and bounded) before a caller sees it. */
#include "monitor-private.h"

#include "jsonval.h"

void vmlet_monitor_query_status(VmletMonitor *mon, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data)
{
  static const Reply r = {REPLY_STATUS, NULL, NULL};
  monitor_call(mon, vmlet_monitor_query_status, "query-status", NULL, &r, cancellable, callback,
       user_data);
}

gboolean vmlet_monitor_query_status_finish(VmletMonitor *mon, GAsyncResult *result,
                                           VmletRunStatus *out, GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), FALSE);
  g_autofree VmletRunStatus *st = g_task_propagate_pointer(G_TASK(result), error);
  if (!st)
    return FALSE;
  *out = *st;
  return TRUE;
}

void vmlet_monitor_qom_list(VmletMonitor *mon, const char *path, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
  static const Reply r = {REPLY_NAMED, "name", "type"};
  g_autoptr(JsonObject) args = monitor_args1("path", path);
  monitor_call(mon, vmlet_monitor_qom_list, "qom-list", args, &r, cancellable, callback, user_data);
}

GHashTable *vmlet_monitor_qom_list_finish(VmletMonitor *mon, GAsyncResult *result,
                                          GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), NULL);
  return g_task_propagate_pointer(G_TASK(result), error);
}

void vmlet_monitor_qom_get(VmletMonitor *mon, const char *path, const char *property,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
  static const Reply r = {REPLY_VALUE, NULL, NULL};
  g_autoptr(JsonObject) args = monitor_args1("path", path);
  json_object_set_string_member(args, "property", property);
  monitor_call(mon, vmlet_monitor_qom_get, "qom-get", args, &r, cancellable, callback, user_data);
}

static JsonNode *value_finish(VmletMonitor *mon, GAsyncResult *result, GType type,
                              const char *what, GError **error)
{
  g_autoptr(JsonNode) v = g_task_propagate_pointer(G_TASK(result), error);
  if (!v)
    return NULL;
  if (json_node_get_value_type(v) != type) {
    g_set_error(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL, "qom-get: expected %s",
                what);
    return NULL;
  }
  return g_steal_pointer(&v);
}

char *vmlet_monitor_qom_get_string_finish(VmletMonitor *mon, GAsyncResult *result,
                                          GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), NULL);
  g_autoptr(JsonNode) v = value_finish(mon, result, G_TYPE_STRING, "a string", error);
  return v ? g_strdup(json_node_get_string(v)) : NULL;
}

gboolean vmlet_monitor_qom_get_int_finish(VmletMonitor *mon, GAsyncResult *result, gint64 *out,
                                          GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), FALSE);
  g_autoptr(JsonNode) v = value_finish(mon, result, G_TYPE_INT64, "an integer", error);
  if (!v)
    return FALSE;
  *out = json_node_get_int(v);
  return TRUE;
}

void vmlet_monitor_query_block_nodes(VmletMonitor *mon, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data)
{
  static const Reply r = {REPLY_NAMED, "node-name", NULL};
  g_autoptr(JsonObject) args = json_object_new();
  json_object_set_boolean_member(args, "flat", TRUE);
  monitor_call(mon, vmlet_monitor_query_block_nodes, "query-named-block-nodes", args, &r, cancellable,
       callback, user_data);
}

GHashTable *vmlet_monitor_query_block_nodes_finish(VmletMonitor *mon, GAsyncResult *result,
                                                   GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), NULL);
  return g_task_propagate_pointer(G_TASK(result), error);
}

void vmlet_monitor_query_machine(VmletMonitor *mon, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  static const Reply r = {REPLY_VALUE, NULL, NULL};
  g_autoptr(JsonObject) args = monitor_args1("path", "/machine");
  json_object_set_string_member(args, "property", "type");
  monitor_call(mon, vmlet_monitor_query_machine, "qom-get", args, &r, cancellable, callback, user_data);
}

char *vmlet_monitor_query_machine_finish(VmletMonitor *mon, GAsyncResult *result,
                                         GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, mon), NULL);
  g_autoptr(JsonNode) v = value_finish(mon, result, G_TYPE_STRING, "a string", error);
  if (!v)
    return NULL;
  /* QOM names machine classes "<machine>-machine" (TYPE_MACHINE_SUFFIX). */
  const char *type = json_node_get_string(v);
  if (!g_str_has_suffix(type, "-machine") || strlen(type) > 64 + strlen("-machine")) {
    g_autofree char *quoted = vmlet_quote_for_message(type);
    g_set_error(error, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                "qom-get /machine type: unexpected %s", quoted);
    return NULL;
  }
  return g_strndup(type, strlen(type) - strlen("-machine"));
}
