/* Commands that go through vmletd's API. Errors are printed once, here. */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "client.h"
#include "fileio.h"
#include "node.h"
#include "jsonval.h"
#include "objects.h"
#include "table.h"
#include "vmlet-error.h"
#include "yamljson.h"
#include "vmlet-config.h"

#define API "/apis/virtualization.deckhouse.io/v1alpha2"
#define EXIT_USAGE 2

typedef struct {
  char *socket;
  char *config;
  char *namespace;
} RemoteOptions;

static void remote_options_clear(RemoteOptions *o)
{
  g_free(o->socket);
  g_free(o->config);
  g_free(o->namespace);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(RemoteOptions, remote_options_clear)

static void add_remote_entries(GOptionContext *ctx, RemoteOptions *o, const GOptionEntry *extra)
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

static VmletClient *connect_client(RemoteOptions *o, GError **error)
{
  if (!o->namespace)
    o->namespace = g_strdup("default");
  if (o->socket)
    return vmlet_client_new(o->socket);
  const char *config = o->config;
  if (!config && g_file_test(VMLET_SYSCONFDIR "/vmlet.conf", G_FILE_TEST_EXISTS))
    config = VMLET_SYSCONFDIR "/vmlet.conf";
  g_autoptr(VmletNode) node = config ? vmlet_node_load(config, error) : vmlet_node_new_default();
  if (!node)
    return NULL;
  g_autofree char *path = g_build_filename(node->run_dir, "vmletd.sock", NULL);
  return vmlet_client_new(path);
}

static int report(const char *cmd, JsonNode *reply, guint status);

/* The client for a command, or NULL after printing why. */
static VmletClient *open_client(const char *cmd, RemoteOptions *o)
{
  g_autoptr(GError) error = NULL;
  VmletClient *c = connect_client(o, &error);
  if (!c)
    fprintf(stderr, "vmlet %s: %s\n", cmd, error->message);
  return c;
}

/* One request: 0 with *out set when vmletd answers with status ok, else the problem is
 * printed once and the exit code returned. */
static int call(const char *cmd, VmletClient *c, const char *method, const char *path,
                const char *body, guint ok, JsonNode **out)
{
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) reply = vmlet_client_request(c, method, path, body,
                                                   body ? strlen(body) : 0, &status, &error);
  if (!reply) {
    fprintf(stderr, "vmlet %s: %s\n", cmd, error->message);
    return 1;
  }
  if (status != ok)
    return report(cmd, reply, status);
  if (out)
    *out = g_steal_pointer(&reply);
  return 0;
}

/* Prints a Kubernetes Status error from vmletd; returns the exit code. */
static int report(const char *cmd, JsonNode *reply, guint status)
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

static gboolean parse(GOptionContext *ctx, const char *cmd, int *argc, char ***argv, int min_args,
                      int max_args)
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

static void print_json(JsonNode *node)
{
  g_autofree char *text = json_to_string(node, TRUE);
  printf("%s\n", text);
}

static const char *str_at(JsonObject *o, const char *a, const char *b)
{
  JsonNode *n = o ? json_object_get_member(o, a) : NULL;
  if (b && n && JSON_NODE_HOLDS_OBJECT(n))
    n = json_object_get_member(json_node_get_object(n), b);
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
             ? json_node_get_string(n)
             : NULL;
}

/* The warnings vmletd keeps in a VM's status.warnings, as kubectl prints an API server's:
 * "Warning: ..." on stderr, after the request succeeded. */
static void print_warnings(JsonNode *vm)
{
  JsonObject *root = vm && JSON_NODE_HOLDS_OBJECT(vm) ? json_node_get_object(vm) : NULL;
  JsonObject *st = root && json_object_has_member(root, "status")
                       ? json_object_get_object_member(root, "status")
                       : NULL;
  JsonArray *w = st && json_object_has_member(st, "warnings")
                     ? json_object_get_array_member(st, "warnings")
                     : NULL;
  for (guint i = 0; w && i < json_array_get_length(w); i++)
    fprintf(stderr, "Warning: %s\n", json_array_get_string_element(w, i));
}

typedef struct {
  VmletTableMode mode;
  gboolean header_done;
  const char *only; /* a VM name, or NULL */
} WatchPrint;

/* kubectl get -w: the header once, then one row per event. */
static gboolean print_event(JsonObject *event, gpointer data)
{
  WatchPrint *wp = data;
  JsonNode *obj = json_object_get_member(event, "object");
  if (!obj || !JSON_NODE_HOLDS_OBJECT(obj))
    return TRUE;
  if (wp->only && g_strcmp0(str_at(json_node_get_object(obj), "metadata", "name"), wp->only))
    return TRUE;
  if (g_strcmp0(json_object_get_string_member_with_default(event, "type", ""), "DELETED") == 0)
    return TRUE;
  g_autoptr(JsonArray) one = json_array_new();
  json_array_add_element(one, json_node_copy(obj));
  g_autoptr(GDateTime) now = g_date_time_new_now_utc();
  g_autofree char *table = vmlet_table_format_vms(one, now, wp->mode, NULL);
  if (!table)
    return TRUE;
  const char *row = strchr(table, '\n');
  if (!wp->header_done) {
    fputs(table, stdout);
    wp->header_done = TRUE;
  } else if (row) {
    fputs(row + 1, stdout);
  }
  fflush(stdout);
  return TRUE;
}

/* The part of kubectl's JSONPath the guide uses: {.a.b[0].c}. Strings print raw, other
 * values as compact JSON, as kubectl does. */
static gboolean print_jsonpath(JsonNode *root, const char *expr, GError **error)
{
  gsize n = strlen(expr);
  if (n < 3 || expr[0] != '{' || expr[n - 1] != '}' || expr[1] != '.') {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "jsonpath: expected {.field.field[index]...}, found \"%s\"", expr);
    return FALSE;
  }
  g_autofree char *inner = g_strndup(expr + 2, n - 3);
  JsonNode *cur = root;
  g_auto(GStrv) parts = g_strsplit(inner, ".", 64);
  for (guint i = 0; parts[i] && cur; i++) {
    if (!*parts[i])
      continue;
    char *bracket = strchr(parts[i], '[');
    gint64 index = -1;
    if (bracket) {
      index = g_ascii_strtoll(bracket + 1, NULL, 10);
      *bracket = '\0';
    }
    if (*parts[i])
      cur = JSON_NODE_HOLDS_OBJECT(cur) ? json_object_get_member(json_node_get_object(cur), parts[i])
                                        : NULL;
    if (cur && index >= 0)
      cur = JSON_NODE_HOLDS_ARRAY(cur) && index < json_array_get_length(json_node_get_array(cur))
                ? json_array_get_element(json_node_get_array(cur), (guint)index)
                : NULL;
  }
  if (!cur)
    return TRUE; /* kubectl prints nothing for a path that finds nothing */
  if (JSON_NODE_HOLDS_VALUE(cur) && json_node_get_value_type(cur) == G_TYPE_STRING)
    printf("%s", json_node_get_string(cur));
  else {
    g_autofree char *text = json_to_string(cur, FALSE);
    printf("%s", text);
  }
  return TRUE;
}

int vmlet_cmd_get(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autofree char *output = NULL;
  gboolean watch = FALSE;
  GOptionEntry extra[] = {
      {"output", 'o', 0, G_OPTION_ARG_STRING, &output, "wide, json or jsonpath={...}",
       "FORMAT"},
      {"watch", 'w', 0, G_OPTION_ARG_NONE, &watch, "after listing, print every change",
       NULL},
      {NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("[NAME] - list VMs like `d8 k get vm`");
  add_remote_entries(ctx, &o, extra);
  if (!parse(ctx, "get", &argc, &argv, 0, 1))
    return EXIT_USAGE;
  if (output && !g_str_equal(output, "wide") && !g_str_equal(output, "json") &&
      !g_str_has_prefix(output, "jsonpath=")) {
    fprintf(stderr, "vmlet get: -o: expected wide, json or jsonpath={...}, found \"%s\"\n",
            output);
    return EXIT_USAGE;
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletClient) c = open_client("get", &o);
  if (!c)
    return 1;
  if (watch) {
    if (output && g_str_equal(output, "json")) {
      fprintf(stderr, "vmlet get: -w prints tables; use the API for a JSON stream\n");
      return EXIT_USAGE;
    }
    WatchPrint wp = {.mode = output ? VMLET_TABLE_WIDE : VMLET_TABLE_NORMAL,
                     .only = argc > 1 ? argv[1] : NULL};
    g_autofree char *wpath = g_strdup_printf(API "/namespaces/%s/virtualmachines?watch=true",
                                             o.namespace);
    if (!vmlet_client_watch(c, wpath, print_event, &wp, &error)) {
      fprintf(stderr, "vmlet get: %s\n", error->message);
      return 1;
    }
    return 0;
  }
  g_autofree char *path = argc > 1 ? g_strdup_printf(API "/namespaces/%s/virtualmachines/%s",
                                                     o.namespace, argv[1])
                                   : g_strdup_printf(API "/namespaces/%s/virtualmachines",
                                                     o.namespace);
  g_autoptr(JsonNode) reply = NULL;
  int rc = call("get", c, "GET", path, NULL, 200, &reply);
  if (rc)
    return rc;
  if (output && g_str_equal(output, "json")) {
    print_json(reply);
    return 0;
  }
  if (output && g_str_has_prefix(output, "jsonpath=")) {
    if (!print_jsonpath(reply, output + strlen("jsonpath="), &error)) {
      fprintf(stderr, "vmlet get: %s\n", error->message);
      return EXIT_USAGE;
    }
    return 0;
  }
  JsonArray *items = NULL;
  g_autoptr(JsonArray) one = NULL;
  if (argc > 1) {
    one = json_array_new();
    json_array_add_element(one, json_node_copy(reply));
    items = one;
  } else {
    JsonNode *in = JSON_NODE_HOLDS_OBJECT(reply)
                       ? json_object_get_member(json_node_get_object(reply), "items")
                       : NULL;
    if (!in || !JSON_NODE_HOLDS_ARRAY(in)) {
      fprintf(stderr, "vmlet get: vmletd's reply has no items list\n");
      return 1;
    }
    items = json_node_get_array(in);
  }
  g_autoptr(GDateTime) now = g_date_time_new_now_utc();
  g_autofree char *table = vmlet_table_format_vms(
      items, now, output ? VMLET_TABLE_WIDE : VMLET_TABLE_NORMAL, &error);
  if (!table) {
    fprintf(stderr, "vmlet get: %s\n", error->message);
    return 1;
  }
  if (!*table)
    fprintf(stderr, "No resources found in %s namespace.\n", o.namespace);
  fputs(table, stdout);
  return 0;
}

int vmlet_cmd_describe(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("NAME - spec, status and operations");
  add_remote_entries(ctx, &o, NULL);
  if (!parse(ctx, "describe", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = open_client("describe", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", o.namespace,
                                          argv[1]);
  g_autoptr(JsonNode) vm = NULL;
  int rc = call("describe", c, "GET", path, NULL, 200, &vm);
  if (rc)
    return rc;
  JsonObject *root = json_node_get_object(vm);
  JsonObject *st = json_object_get_object_member(root, "status");
  printf("Name:        %s\nNamespace:   %s\nPhase:       %s\nNode:        %s\n", argv[1],
         o.namespace, str_at(root, "status", "phase"),
         str_at(root, "status", "nodeName") ? str_at(root, "status", "nodeName") : "<none>");
  if (json_object_has_member(root, "spec")) {
    g_autofree char *spec = json_to_string(json_object_get_member(root, "spec"), TRUE);
    printf("Spec:\n%s\n", spec);
  }
  printf("Conditions:\n");
  JsonArray *conds = json_object_get_array_member(st, "conditions");
  for (guint i = 0; conds && i < json_array_get_length(conds); i++) {
    JsonObject *cnd = json_array_get_object_element(conds, i);
    printf("  %-12s %-6s %s%s%s\n", str_at(cnd, "type", NULL), str_at(cnd, "status", NULL),
           str_at(cnd, "reason", NULL) ? str_at(cnd, "reason", NULL) : "",
           str_at(cnd, "message", NULL) ? ": " : "",
           str_at(cnd, "message", NULL) ? str_at(cnd, "message", NULL) : "");
  }
  JsonArray *warnings = json_object_has_member(st, "warnings")
                            ? json_object_get_array_member(st, "warnings")
                            : NULL;
  if (warnings) {
    printf("Warnings:\n");
    for (guint i = 0; i < json_array_get_length(warnings); i++)
      printf("  %s\n", json_array_get_string_element(warnings, i));
  }
  printf("Phase transitions:\n");
  JsonArray *tr = json_object_get_array_member(json_object_get_object_member(st, "stats"),
                                               "phasesTransitions");
  for (guint i = 0; tr && i < json_array_get_length(tr); i++) {
    JsonObject *t = json_array_get_object_element(tr, i);
    printf("  %s  %s\n", str_at(t, "timestamp", NULL), str_at(t, "phase", NULL));
  }
  g_autofree char *ops_path = g_strdup_printf(API "/namespaces/%s/virtualmachineoperations",
                                              o.namespace);
  g_autoptr(JsonNode) ops = NULL;
  if (call("describe", c, "GET", ops_path, NULL, 200, &ops))
    return 1;
  printf("Operations:\n");
  JsonArray *items = ops ? json_object_get_array_member(json_node_get_object(ops), "items") : NULL;
  for (guint i = 0; items && i < json_array_get_length(items); i++) {
    JsonObject *op = json_array_get_object_element(items, i);
    if (g_strcmp0(str_at(op, "spec", "virtualMachineName"), argv[1]) != 0)
      continue;
    printf("  %s  %-8s %-10s %s\n", str_at(op, "metadata", "creationTimestamp"),
           str_at(op, "spec", "type"), str_at(op, "status", "phase"),
           str_at(op, "status", "reason") ? str_at(op, "status", "reason") : "");
  }
  return 0;
}

int vmlet_cmd_operation(const char *type, int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  gboolean force = FALSE;
  GOptionEntry extra[] = {
      {"force", 0, 0, G_OPTION_ARG_NONE, &force, "no graceful shutdown: stop QEMU at once",
       NULL},
      {NULL},
  };
  g_autofree char *lower = g_ascii_strdown(type, -1);
  g_autofree char *summary = g_strdup_printf("NAME - %s a VM (a VirtualMachineOperation)", lower);
  g_autoptr(GOptionContext) ctx = g_option_context_new(summary);
  add_remote_entries(ctx, &o, g_str_equal(type, "Start") ? NULL : extra);
  if (!parse(ctx, lower, &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = open_client(lower, &o);
  if (!c)
    return 1;
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "apiVersion");
  json_builder_add_string_value(b, "virtualization.deckhouse.io/v1alpha2");
  json_builder_set_member_name(b, "kind");
  json_builder_add_string_value(b, "VirtualMachineOperation");
  json_builder_set_member_name(b, "spec");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "virtualMachineName");
  json_builder_add_string_value(b, argv[1]);
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, type);
  json_builder_set_member_name(b, "force");
  json_builder_add_boolean_value(b, force);
  json_builder_end_object(b);
  json_builder_end_object(b);
  g_autoptr(JsonNode) req = json_builder_get_root(b);
  g_autofree char *body = json_to_string(req, FALSE);
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachineoperations",
                                          o.namespace);
  g_autoptr(JsonNode) reply = NULL;
  int rc = call(lower, c, "POST", path, body, 201, &reply);
  if (rc)
    return rc;
  JsonObject *op = json_node_get_object(reply);
  printf("virtualmachineoperation.virtualization.deckhouse.io/%s created\n",
         str_at(op, "metadata", "name"));
  /* Refused by the run policy or the VM's state: created, and already Failed. */
  if (g_strcmp0(str_at(op, "status", "phase"), "Failed") == 0) {
    fprintf(stderr, "vmlet %s: %s failed: %s\n", lower, str_at(op, "metadata", "name"),
            str_at(op, "status", "reason") ? str_at(op, "status", "reason") : "no reason given");
    return 1;
  }
  return 0;
}

int vmlet_cmd_apply(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autofree char *file = NULL;
  GOptionEntry extra[] = {
      {"filename", 'f', 0, G_OPTION_ARG_FILENAME, &file, "a VirtualMachine as JSON or YAML (- for stdin)",
       "FILE"},
      {NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("-f FILE - create or update a VM");
  add_remote_entries(ctx, &o, extra);
  if (!parse(ctx, "apply", &argc, &argv, 0, 0))
    return EXIT_USAGE;
  if (!file) {
    fprintf(stderr, "vmlet apply: -f FILE is required\n");
    return EXIT_USAGE;
  }
  g_autoptr(GError) error = NULL;
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_manifest(file, &data, &len, &error)) {
    fprintf(stderr, "vmlet apply: %s\n", error->message);
    return 1;
  }
  /* Validate here too, so mistakes are shown with this file's name before anything is sent. */
  const char *source = g_str_equal(file, "-") ? "<stdin>" : file;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse(source, data, len, NULL, &error);
  g_autoptr(JsonNode) root = objs ? vmlet_json_parse(source, data, (gssize)len, &error) : NULL;
  if (!root) {
    fprintf(stderr, "%s\n", error->message);
    return 1;
  }
  g_autoptr(VmletClient) c = open_client("apply", &o);
  if (!c)
    return 1;
  /* objs holds one object per document or List item, in order. */
  JsonObject *ro = json_node_get_object(root);
  JsonArray *items = json_object_has_member(ro, "items") ? json_object_get_array_member(ro, "items")
                                                         : NULL;
  int rc = 0;
  for (guint i = 0; i < objs->len; i++) {
    VmletObject *obj = objs->pdata[i];
    if (obj->kind != VMLET_KIND_VIRTUAL_MACHINE) {
      fprintf(stderr, "vmlet apply: %s: only VirtualMachine objects go through the API yet; "
                      "put other kinds in the node's drop-in directories\n", file);
      rc = 1;
      continue;
    }
    g_autofree char *text = json_to_string(items ? json_array_get_element(items, i) : root, TRUE);
    g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s",
                                            obj->vm->meta.namespace, obj->vm->meta.name);
    g_autoptr(JsonNode) applied = NULL;
    if (call("apply", c, "PUT", path, text, 200, &applied)) {
      rc = 1;
      continue;
    }
    printf("virtualmachine.virtualization.deckhouse.io/%s configured\n", obj->vm->meta.name);
    print_warnings(applied);
  }
  return rc;
}

int vmlet_cmd_delete(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("NAME - delete a VM (stops it)");
  add_remote_entries(ctx, &o, NULL);
  if (!parse(ctx, "delete", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = open_client("delete", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", o.namespace,
                                          argv[1]);
  int rc = call("delete", c, "DELETE", path, NULL, 200, NULL);
  if (rc)
    return rc;
  printf("virtualmachine.virtualization.deckhouse.io \"%s\" deleted\n", argv[1]);
  return 0;
}

int vmlet_cmd_patch(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autofree char *type = NULL, *patch = NULL;
  GOptionEntry extra[] = {
      {"type", 0, 0, G_OPTION_ARG_STRING, &type, "merge (RFC 7386; the only type)", "TYPE"},
      {"patch", 'p', 0, G_OPTION_ARG_STRING, &patch, "the patch, as JSON", "JSON"},
      {NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("NAME --type merge -p JSON - change a VM");
  add_remote_entries(ctx, &o, extra);
  if (!parse(ctx, "patch", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  if (type && !g_str_equal(type, "merge")) {
    fprintf(stderr, "vmlet patch: --type: expected merge, found \"%s\"\n", type);
    return EXIT_USAGE;
  }
  if (!patch) {
    fprintf(stderr, "vmlet patch: -p JSON is required\n");
    return EXIT_USAGE;
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) check = vmlet_json_parse("-p", patch, -1, &error);
  if (!check) {
    fprintf(stderr, "vmlet patch: %s\n", error->message);
    return 1;
  }
  g_autoptr(VmletClient) c = open_client("patch", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", o.namespace,
                                          argv[1]);
  g_autoptr(JsonNode) patched = NULL;
  int rc = call("patch", c, "PATCH", path, patch, 200, &patched);
  if (rc)
    return rc;
  printf("virtualmachine.virtualization.deckhouse.io/%s patched\n", argv[1]);
  print_warnings(patched);
  return 0;
}

/* kubectl edit: the VM (metadata and spec, defaults filled in) in $EDITOR; on save it is
 * validated by vmletd and written only when valid. An unchanged file changes nothing. */
int vmlet_cmd_edit(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("NAME - edit a VM in $EDITOR");
  add_remote_entries(ctx, &o, NULL);
  if (!parse(ctx, "edit", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletClient) c = open_client("edit", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", o.namespace,
                                          argv[1]);
  g_autoptr(JsonNode) vm = NULL;
  int rc = call("edit", c, "GET", path, NULL, 200, &vm);
  if (rc)
    return rc;
  /* What a person edits: the object without its status. */
  JsonObject *obj = json_node_get_object(vm);
  if (json_object_has_member(obj, "status"))
    json_object_remove_member(obj, "status");
  JsonObject *md = json_object_get_object_member(obj, "metadata");
  if (md && json_object_has_member(md, "creationTimestamp"))
    json_object_remove_member(md, "creationTimestamp");
  g_autofree char *before = json_to_string(vm, TRUE);
  g_autofree char *tmp = NULL;
  int fd = g_file_open_tmp("vmlet-edit-XXXXXX.json", &tmp, &error);
  if (fd < 0) {
    fprintf(stderr, "vmlet edit: %s\n", error->message);
    return 1;
  }
  close(fd);
  if (!g_file_set_contents(tmp, before, -1, &error)) {
    fprintf(stderr, "vmlet edit: %s\n", error->message);
    g_unlink(tmp);
    return 1;
  }
  const char *editor = g_getenv("VISUAL") ? g_getenv("VISUAL") : g_getenv("EDITOR");
  g_autofree char *cmd = g_strdup_printf("%s '%s'", editor ? editor : "vi", tmp);
  int editor_rc = system(cmd);
  g_autofree char *after = NULL;
  gsize len = 0;
  gboolean read_ok = editor_rc == 0 && vmlet_read_file_bounded(tmp, VMLET_MAX_DROPIN_BYTES, &after, &len,
                                                        &error);
  g_unlink(tmp);
  if (!read_ok) {
    fprintf(stderr, "vmlet edit: %s\n", error ? error->message : "the editor failed; nothing changed");
    return 1;
  }
  if (g_str_equal(g_strstrip(after), g_strstrip(before))) {
    printf("Edit cancelled, no changes made.\n");
    return 0;
  }
  g_autoptr(JsonNode) edited = NULL;
  if (call("edit", c, "PUT", path, after, 200, &edited)) {
    fprintf(stderr, "vmlet edit: the edit was refused; the VM is unchanged\n");
    return 1;
  }
  printf("virtualmachine.virtualization.deckhouse.io/%s edited\n", argv[1]);
  print_warnings(edited);
  return 0;
}
