/* The part of every vmletd command that is not the command: options, connection,
 * requests and how their failures are printed (once, here at the edge). */
#include "remote.h"

#include <stdio.h>
#include <string.h>

#include "jsonval.h"
#include "node.h"

void remote_options_clear(RemoteOptions *o)
{
  g_free(o->socket);
  g_free(o->config);
  g_free(o->namespace);
}

void remote_add_entries(GOptionContext *ctx, RemoteOptions *o, const GOptionEntry *extra)
{
  GOptionEntry common[] = {
      {"socket", 0, 0, G_OPTION_ARG_FILENAME, &o->socket,
       "vmletd's API socket (default <run-dir>/vmletd.sock)", "PATH"},
      {"config", 'c', 0, G_OPTION_ARG_FILENAME, &o->config, "node settings file", "FILE"},
      {"namespace", 'n', 0, G_OPTION_ARG_STRING, &o->namespace, "namespace (default: default)",
       "NS"},
      {NULL},
  };
  g_option_context_add_main_entries(ctx, common, NULL);
  if (extra)
    g_option_context_add_main_entries(ctx, extra, NULL);
}

gboolean remote_parse(GOptionContext *ctx, const char *cmd, int *argc, char ***argv,
                      int min_args, int max_args)
{
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, argc, argv, &error)) {
    fprintf(stderr, "vmlet %s: %s\n", cmd, error->message);
    return FALSE;
  }
  if (*argc - 1 < min_args || *argc - 1 > max_args) {
    fprintf(stderr, "vmlet %s: expected %s\n", cmd,
            max_args == 0 ? "no arguments" : min_args == 1 ? "a VM name" : "at most one VM name");
    return FALSE;
  }
  return TRUE;
}

/* The socket: --socket, else the one in the node's run directory. */
static VmletClient *connect_client(RemoteOptions *o, GError **error)
{
  if (!o->namespace)
    o->namespace = g_strdup("default");
  if (o->socket)
    return vmlet_client_new(o->socket);
  const char *config = vmlet_node_config_path(o->config);
  g_autoptr(VmletNode) node = config ? vmlet_node_load(config, error) : vmlet_node_new_default();
  if (!node)
    return NULL;
  g_autofree char *path = g_build_filename(node->run_dir, "vmletd.sock", NULL);
  return vmlet_client_new(path);
}

VmletClient *remote_open(const char *cmd, RemoteOptions *o)
{
  g_autoptr(GError) error = NULL;
  VmletClient *c = connect_client(o, &error);
  if (!c)
    fprintf(stderr, "vmlet %s: %s\n", cmd, error->message);
  return c;
}

/* One request: TRUE with the answer and its status, or FALSE after printing why there is
 * none. */
static gboolean request(const char *cmd, VmletClient *c, const char *method, const char *path,
                        const char *body, guint *status, JsonNode **reply)
{
  g_autoptr(GError) error = NULL;
  *reply = vmlet_client_request(c, method, path, body, body ? strlen(body) : 0, status, &error);
  if (!*reply)
    fprintf(stderr, "vmlet %s: %s\n", cmd, error->message);
  return *reply != NULL;
}

int remote_call(const char *cmd, VmletClient *c, const char *method, const char *path,
                const char *body, guint ok, JsonNode **out)
{
  guint status = 0;
  g_autoptr(JsonNode) reply = NULL;
  if (!request(cmd, c, method, path, body, &status, &reply))
    return 1;
  if (status != ok)
    return remote_report(cmd, reply, status);
  if (out)
    *out = g_steal_pointer(&reply);
  return 0;
}

int remote_get(const char *cmd, VmletClient *c, const char *path, JsonNode **out)
{
  guint status = 0;
  g_autoptr(JsonNode) reply = NULL;
  if (!request(cmd, c, "GET", path, NULL, &status, &reply))
    return 1;
  if (status == 404) {
    *out = NULL;
    return 0;
  }
  if (status != 200 || !JSON_NODE_HOLDS_OBJECT(reply))
    return remote_report(cmd, reply, status);
  *out = g_steal_pointer(&reply);
  return 0;
}

int remote_report(const char *cmd, JsonNode *reply, guint status)
{
  const char *message = NULL;
  if (reply && JSON_NODE_HOLDS_OBJECT(reply)) {
    JsonObject *o = json_node_get_object(reply);
    if (json_object_has_member(o, "message"))
      message = json_object_get_string_member(o, "message");
  }
  fprintf(stderr, "vmlet %s: %s (HTTP %u)\n", cmd, message ? message : "request failed", status);
  return 1;
}

int remote_put_vmbda(const char *cmd, VmletClient *c, const char *ns, const char *name,
                     const char *body)
{
  g_autofree char *path = g_strdup_printf(
      API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", ns, name);
  guint status = 0;
  g_autoptr(JsonNode) reply = NULL;
  if (!request(cmd, c, "PUT", path, body, &status, &reply))
    return 1;
  /* Unlike a VM's PUT, 201 tells a new attachment from one that was already there. */
  if (status != 200 && status != 201)
    return remote_report(cmd, reply, status);
  printf("virtualmachineblockdeviceattachment.virtualization.deckhouse.io/%s %s\n", name,
         status == 201 ? "created" : "unchanged");
  fflush(stdout);
  return 0;
}

const char *remote_str(JsonObject *o, const char *a, const char *b)
{
  JsonNode *n = o ? json_object_get_member(o, a) : NULL;
  if (b && n && JSON_NODE_HOLDS_OBJECT(n))
    n = json_object_get_member(json_node_get_object(n), b);
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
             ? json_node_get_string(n)
             : NULL;
}

/* kubectl prints an API server's warnings after the request succeeded. */
void remote_print_warnings(JsonNode *vm)
{
  JsonObject *root = vm && JSON_NODE_HOLDS_OBJECT(vm) ? json_node_get_object(vm) : NULL;
  JsonArray *w = jv_array_at(jv_object_at(root, "status"), "warnings");
  for (guint i = 0; w && i < json_array_get_length(w); i++) {
    JsonNode *e = json_array_get_element(w, i);
    if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING)
      fprintf(stderr, "Warning: %s\n", json_node_get_string(e));
  }
}
