/* Commands that go through vmletd's API. Errors are printed once, here. */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "attachment.h"
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
  const char *only; /* an object name, or NULL */
  gboolean vmbda;   /* attachments, else VMs */
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
  g_autofree char *table = wp->vmbda ? vmlet_table_format_vmbdas(one, now, NULL)
                                     : vmlet_table_format_vms(one, now, wp->mode, NULL);
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
  g_autoptr(GOptionContext) ctx =
      g_option_context_new("[vm|vmbda] [NAME] - list VMs or attachments like `d8 k get`");
  add_remote_entries(ctx, &o, extra);
  if (!parse(ctx, "get", &argc, &argv, 0, 2))
    return EXIT_USAGE;
  /* kubectl's form: an optional resource type first (a bare NAME is a VM, as before). */
  static const char *const vm_words[] = {"vm", "vms", "virtualmachine", "virtualmachines", NULL};
  static const char *const vmbda_words[] = {"vmbda", "vmbdas", "virtualmachineblockdeviceattachment",
                                            "virtualmachineblockdeviceattachments", NULL};
  gboolean vmbda = argc > 1 && g_strv_contains(vmbda_words, argv[1]);
  if (argc > 1 && (vmbda || g_strv_contains(vm_words, argv[1]))) {
    argc--;
    argv++;
  }
  if (argc > 2) {
    fprintf(stderr, "vmlet get: expected at most one name\n");
    return EXIT_USAGE;
  }
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
  const char *resource = vmbda ? "virtualmachineblockdeviceattachments" : "virtualmachines";
  if (watch) {
    if (output && g_str_equal(output, "json")) {
      fprintf(stderr, "vmlet get: -w prints tables; use the API for a JSON stream\n");
      return EXIT_USAGE;
    }
    WatchPrint wp = {.mode = output ? VMLET_TABLE_WIDE : VMLET_TABLE_NORMAL,
                     .only = argc > 1 ? argv[1] : NULL, .vmbda = vmbda};
    g_autofree char *wpath = g_strdup_printf(API "/namespaces/%s/%s?watch=true", o.namespace,
                                             resource);
    if (!vmlet_client_watch(c, wpath, print_event, &wp, &error)) {
      fprintf(stderr, "vmlet get: %s\n", error->message);
      return 1;
    }
    return 0;
  }
  g_autofree char *path = argc > 1 ? g_strdup_printf(API "/namespaces/%s/%s/%s", o.namespace,
                                                     resource, argv[1])
                                   : g_strdup_printf(API "/namespaces/%s/%s", o.namespace,
                                                     resource);
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
  g_autofree char *table =
      vmbda ? vmlet_table_format_vmbdas(items, now, &error)
            : vmlet_table_format_vms(items, now, output ? VMLET_TABLE_WIDE : VMLET_TABLE_NORMAL,
                                     &error);
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
  if (json_object_has_member(st, "resources")) {
    g_autofree char *res = json_to_string(json_object_get_member(st, "resources"), TRUE);
    printf("Resources:\n%s\n", res);
  }
  printf("Cgroup:      %s\n", str_at(root, "status", "cgroup") ? str_at(root, "status", "cgroup")
                                                                  : "<none>");
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
    if (obj->kind == VMLET_KIND_VMBDA) {
      const VmletAttachment *att = obj->attachment;
      g_autofree char *text = json_to_string(items ? json_array_get_element(items, i) : root, TRUE);
      g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachineblockdeviceattachments/%s",
                                              att->meta.namespace, att->meta.name);
      guint status = 0;
      g_autoptr(GError) err = NULL;
      g_autoptr(JsonNode) reply = vmlet_client_request(c, "PUT", path, text, strlen(text), &status,
                                                       &err);
      if (!reply) {
        fprintf(stderr, "vmlet apply: %s\n", err->message);
        rc = 1;
      } else if (status != 200 && status != 201) {
        rc = report("apply", reply, status);
      } else {
        printf("virtualmachineblockdeviceattachment.virtualization.deckhouse.io/%s %s\n",
               att->meta.name, status == 201 ? "created" : "unchanged");
      }
      continue;
    }
    if (obj->kind != VMLET_KIND_VIRTUAL_MACHINE) {
      fprintf(stderr, "vmlet apply: %s: only VirtualMachine and "
                      "VirtualMachineBlockDeviceAttachment objects go through the API yet; "
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
  g_autoptr(GOptionContext) ctx =
      g_option_context_new("[vm|vmbda] NAME - delete a VM (stops it) or an attachment (detaches)");
  add_remote_entries(ctx, &o, NULL);
  if (!parse(ctx, "delete", &argc, &argv, 1, 2))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = open_client("delete", &o);
  if (!c)
    return 1;
  if (argc == 3 && (g_str_equal(argv[1], "vmbda") || g_str_equal(argv[1], "vmbdas") ||
                    g_str_equal(argv[1], "virtualmachineblockdeviceattachment"))) {
    g_autofree char *apath = g_strdup_printf(
        API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", o.namespace, argv[2]);
    int arc = call("delete", c, "DELETE", apath, NULL, 200, NULL);
    if (arc == 0)
      printf("virtualmachineblockdeviceattachment.virtualization.deckhouse.io \"%s\" deleted\n",
             argv[2]);
    return arc;
  }
  if (argc == 3 && (g_str_equal(argv[1], "vm") || g_str_equal(argv[1], "virtualmachine"))) {
    argc--;
    argv++;
  }
  if (argc != 2) {
    fprintf(stderr, "vmlet delete: expected vm NAME, vmbda NAME or NAME\n");
    return EXIT_USAGE;
  }
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

/* ---- attach / detach / pause ---- */

typedef struct {
  const char *name;
  gboolean gone_is_done; /* detach: the object disappearing is success */
  gint64 deadline_us;
  int rc;
  char *why;
} WaitFor;

static const char *attached_message(JsonObject *obj)
{
  JsonObject *st = json_object_has_member(obj, "status") ? json_object_get_object_member(obj, "status")
                                                         : NULL;
  JsonArray *conds = st && json_object_has_member(st, "conditions")
                         ? json_object_get_array_member(st, "conditions")
                         : NULL;
  for (guint i = 0; conds && i < json_array_get_length(conds); i++) {
    JsonObject *c = json_array_get_object_element(conds, i);
    if (g_strcmp0(str_at(c, "type", NULL), "Attached") == 0)
      return str_at(c, "message", NULL);
  }
  return NULL;
}

/* kubectl wait --for: Attached, or Failed with its reason. */
static gboolean wait_event(JsonObject *event, gpointer data)
{
  WaitFor *w = data;
  if (g_get_monotonic_time() > w->deadline_us) {
    w->why = g_strdup("timed out");
    return FALSE;
  }
  JsonNode *n = json_object_get_member(event, "object");
  if (!n || !JSON_NODE_HOLDS_OBJECT(n))
    return TRUE;
  JsonObject *obj = json_node_get_object(n);
  if (g_strcmp0(str_at(obj, "metadata", "name"), w->name) != 0)
    return TRUE;
  const char *type = json_object_get_string_member_with_default(event, "type", "");
  const char *phase = str_at(obj, "status", "phase");
  if (g_str_equal(type, "DELETED")) {
    w->rc = w->gone_is_done ? 0 : 1;
    if (!w->gone_is_done)
      w->why = g_strdup("the attachment was deleted");
    return FALSE;
  }
  if (!w->gone_is_done && g_strcmp0(phase, "Attached") == 0) {
    w->rc = 0;
    return FALSE;
  }
  if (!w->gone_is_done && g_strcmp0(phase, "Failed") == 0) {
    const char *m = attached_message(obj);
    w->why = g_strdup_printf("Failed: %s", m ? m : "no reason given");
    return FALSE;
  }
  return TRUE;
}

static int wait_for(const char *cmd, VmletClient *c, const char *ns, const char *name,
                    gboolean gone, guint timeout_s)
{
  WaitFor w = {.name = name, .gone_is_done = gone, .rc = 1,
               .deadline_us = g_get_monotonic_time() + (gint64)timeout_s * G_USEC_PER_SEC};
  g_autofree char *path = g_strdup_printf(
      API "/namespaces/%s/virtualmachineblockdeviceattachments?watch=true", ns);
  g_autoptr(GError) error = NULL;
  if (gone) {
    /* Already gone: the watch would never mention it. */
    g_autofree char *one = g_strdup_printf(
        API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", ns, name);
    guint status = 0;
    g_autoptr(JsonNode) r = vmlet_client_request(c, "GET", one, NULL, 0, &status, NULL);
    if (r && status == 404)
      return 0;
  }
  if (!vmlet_client_watch_timeout(c, path, timeout_s, wait_event, &w, &error)) {
    fprintf(stderr, "vmlet %s: %s: %s\n", cmd, name,
            g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) ? "timed out"
                                                                    : error->message);
    return 1;
  }
  if (w.rc != 0)
    fprintf(stderr, "vmlet %s: %s: %s\n", cmd, name, w.why ? w.why : "the watch ended");
  g_free(w.why);
  return w.rc;
}

typedef struct {
  char *disk, *image, *cluster_image, *name;
  gboolean wait;
  gint timeout;
} AttachOptions;

static void attach_options_clear(AttachOptions *a)
{
  g_free(a->disk);
  g_free(a->image);
  g_free(a->cluster_image);
  g_free(a->name);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(AttachOptions, attach_options_clear)

static GOptionEntry *attach_entries(AttachOptions *a, gboolean detach)
{
  static GOptionEntry entries[7];
  GOptionEntry e[] = {
      {"disk", 0, 0, G_OPTION_ARG_STRING, &a->disk, "a VirtualDisk (read-write)", "NAME"},
      {"image", 0, 0, G_OPTION_ARG_STRING, &a->image, "a VirtualImage (read-only; ISO: CD-ROM)",
       "NAME"},
      {"cluster-image", 0, 0, G_OPTION_ARG_STRING, &a->cluster_image,
       "a ClusterVirtualImage (read-only; ISO: CD-ROM)", "NAME"},
      {"name", 0, 0, G_OPTION_ARG_STRING, &a->name,
       detach ? "the attachment's name (instead of VM and device)"
              : "the attachment's name (default VM-NAME)",
       "N"},
      {"wait", 0, 0, G_OPTION_ARG_NONE, &a->wait,
       detach ? "wait until the device is gone" : "wait until Attached (exit 1 if Failed)", NULL},
      {"timeout", 0, 0, G_OPTION_ARG_INT, &a->timeout, "seconds --wait waits (default 60)", "S"},
      {NULL},
  };
  memcpy(entries, e, sizeof(e));
  return entries;
}

/* The device named by --disk / --image / --cluster-image; exactly one. */
static gboolean device_of(const AttachOptions *a, const char *cmd, VmBlockKind *kind,
                          const char **name)
{
  int n = (a->disk != NULL) + (a->image != NULL) + (a->cluster_image != NULL);
  if (n != 1) {
    fprintf(stderr, "vmlet %s: give exactly one of --disk, --image, --cluster-image\n", cmd);
    return FALSE;
  }
  *kind = a->disk ? VM_BLOCK_VIRTUAL_DISK
                  : a->image ? VM_BLOCK_VIRTUAL_IMAGE : VM_BLOCK_CLUSTER_VIRTUAL_IMAGE;
  *name = a->disk ? a->disk : a->image ? a->image : a->cluster_image;
  return TRUE;
}

int vmlet_cmd_attach(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_auto(AttachOptions) a = {.timeout = 60};
  g_autoptr(GOptionContext) ctx = g_option_context_new(
      "VM --disk NAME|--image NAME|--cluster-image NAME - hot-plug a disk or image (vmbda)");
  add_remote_entries(ctx, &o, attach_entries(&a, FALSE));
  if (!parse(ctx, "attach", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  VmBlockKind kind;
  const char *block = NULL;
  if (!device_of(&a, "attach", &kind, &block) || a.timeout <= 0)
    return EXIT_USAGE;
  g_autofree char *name = a.name ? g_strdup(a.name) : g_strdup_printf("%s-%s", argv[1], block);
  if (!vmlet_is_dns1123_label(name) || !vmlet_is_dns1123_label(block) ||
      !vmlet_is_dns1123_label(argv[1])) {
    fprintf(stderr, "vmlet attach: \"%s\" is not a valid name (DNS-1123 label, at most 63 "
                    "characters)%s\n", name, a.name ? "" : "; give one with --name");
    return EXIT_USAGE;
  }
  g_autoptr(VmletClient) c = open_client("attach", &o);
  if (!c)
    return 1;
  g_autoptr(VmletAttachment) att = vmlet_attachment_new(o.namespace, name, argv[1], kind, block);
  g_autoptr(JsonNode) manifest = vmlet_attachment_manifest(att);
  g_autofree char *body = json_to_string(manifest, FALSE);
  g_autofree char *path = g_strdup_printf(
      API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", o.namespace, name);
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) reply = vmlet_client_request(c, "PUT", path, body, strlen(body), &status,
                                                   &error);
  if (!reply) {
    fprintf(stderr, "vmlet attach: %s\n", error->message);
    return 1;
  }
  if (status != 200 && status != 201)
    return report("attach", reply, status);
  printf("virtualmachineblockdeviceattachment.virtualization.deckhouse.io/%s %s\n", name,
         status == 201 ? "created" : "unchanged");
  fflush(stdout);
  return a.wait ? wait_for("attach", c, o.namespace, name, FALSE, (guint)a.timeout) : 0;
}

/* The attachment of vm that plugs kind/block, found in the list. */
static char *find_attachment(VmletClient *c, const char *ns, const char *vm, VmBlockKind kind,
                             const char *block, int *rc)
{
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachineblockdeviceattachments",
                                          ns);
  g_autoptr(JsonNode) list = NULL;
  *rc = call("detach", c, "GET", path, NULL, 200, &list);
  if (*rc)
    return NULL;
  JsonObject *lo = json_node_get_object(list);
  JsonArray *items = json_object_has_member(lo, "items") ? json_object_get_array_member(lo, "items")
                                                         : NULL;
  for (guint i = 0; items && i < json_array_get_length(items); i++) {
    JsonObject *it = json_array_get_object_element(items, i);
    JsonObject *spec = json_object_get_object_member(it, "spec");
    if (g_strcmp0(str_at(spec, "virtualMachineName", NULL), vm) == 0 &&
        g_strcmp0(str_at(spec, "blockDeviceRef", "kind"), vm_block_kind_name(kind)) == 0 &&
        g_strcmp0(str_at(spec, "blockDeviceRef", "name"), block) == 0)
      return g_strdup(str_at(it, "metadata", "name"));
  }
  fprintf(stderr, "vmlet detach: no VirtualMachineBlockDeviceAttachment attaches %s \"%s\" to "
                  "VirtualMachine \"%s\" in namespace \"%s\"\n",
          vm_block_kind_name(kind), block, vm, ns);
  *rc = 1;
  return NULL;
}

int vmlet_cmd_detach(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_auto(AttachOptions) a = {.timeout = 60};
  g_autoptr(GOptionContext) ctx = g_option_context_new(
      "VM --disk NAME|--image NAME|--cluster-image NAME, or --name N - detach (delete the vmbda)");
  add_remote_entries(ctx, &o, attach_entries(&a, TRUE));
  if (!parse(ctx, "detach", &argc, &argv, a.name ? 0 : 0, 1))
    return EXIT_USAGE;
  if (a.timeout <= 0)
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = open_client("detach", &o);
  if (!c)
    return 1;
  g_autofree char *name = NULL;
  if (a.name) {
    if (argc > 1 || a.disk || a.image || a.cluster_image) {
      fprintf(stderr, "vmlet detach: --name N names the attachment; give no VM or device\n");
      return EXIT_USAGE;
    }
    name = g_strdup(a.name);
  } else {
    VmBlockKind kind;
    const char *block = NULL;
    if (argc != 2) {
      fprintf(stderr, "vmlet detach: expected a VM name (or --name N)\n");
      return EXIT_USAGE;
    }
    if (!device_of(&a, "detach", &kind, &block))
      return EXIT_USAGE;
    int rc = 0;
    name = find_attachment(c, o.namespace, argv[1], kind, block, &rc);
    if (!name)
      return rc;
  }
  g_autofree char *path = g_strdup_printf(
      API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", o.namespace, name);
  int rc = call("detach", c, "DELETE", path, NULL, 200, NULL);
  if (rc)
    return rc;
  printf("virtualmachineblockdeviceattachment.virtualization.deckhouse.io \"%s\" deleted\n", name);
  fflush(stdout);
  return a.wait ? wait_for("detach", c, o.namespace, name, TRUE, (guint)a.timeout) : 0;
}

int vmlet_cmd_pause(gboolean pause, int argc, char **argv)
{
  const char *cmd = pause ? "pause" : "unpause";
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx =
      g_option_context_new(pause ? "NAME - stop the VM's vCPUs (QMP stop)"
                                 : "NAME - resume a paused VM (QMP cont)");
  add_remote_entries(ctx, &o, NULL);
  if (!parse(ctx, cmd, &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = open_client(cmd, &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s/%s",
                                          o.namespace, argv[1], cmd);
  int rc = call(cmd, c, "PUT", path, "", 202, NULL);
  if (rc == 0)
    printf("virtualmachine.virtualization.deckhouse.io/%s %s\n", argv[1],
           pause ? "paused" : "unpaused");
  return rc;
}
