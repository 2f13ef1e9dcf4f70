/* vmlet get and describe: vmletd's objects (VMs, attachments, operations) as kubectl
 * prints them (tables, -o json, -o jsonpath, -w), and one VM in detail with its
 * operations. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "jsonval.h"
#include "operation.h"
#include "remote.h"
#include "resource.h"
#include "table.h"
#include "vmlet-error.h"

static void print_json(JsonNode *node)
{
  g_autofree char *text = json_to_string(node, TRUE);
  printf("%s\n", text);
}

static char *format_table(const VmletResource *r, JsonArray *items, GDateTime *now,
                          VmletTableMode mode, GError **error)
{
  switch (r->id) {
  case VMLET_RES_VM:
    return vmlet_table_format_vms(items, now, mode, error);
  case VMLET_RES_VMBDA:
    return vmlet_table_format_vmbdas(items, now, error);
  case VMLET_RES_VMOP:
    return vmlet_table_format_vmops(items, now, mode, error);
  }
  g_assert_not_reached();
}

typedef struct {
  VmletTableMode mode;
  gboolean header_done;
  const char *only; /* an object name, or NULL */
  const VmletResource *resource;
} WatchPrint;

/* kubectl get -w: the header once, then one row per event. */
static gboolean print_event(JsonObject *event, gpointer data)
{
  WatchPrint *wp = data;
  JsonNode *obj = json_object_get_member(event, "object");
  if (!obj || !JSON_NODE_HOLDS_OBJECT(obj))
    return TRUE;
  if (wp->only && g_strcmp0(remote_str(json_node_get_object(obj), "metadata", "name"), wp->only))
    return TRUE;
  if (g_strcmp0(json_object_get_string_member_with_default(event, "type", ""), "DELETED") == 0)
    return TRUE;
  g_autoptr(JsonArray) one = json_array_new();
  json_array_add_element(one, json_node_copy(obj));
  g_autoptr(GDateTime) now = g_date_time_new_now_utc();
  g_autofree char *table = format_table(wp->resource, one, now, wp->mode, NULL);
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

/* -w: vmletd's watch stream for VMs and attachments; operations have none, they are
 * polled (opwait.c). */
static int watch_resource(VmletClient *c, const VmletResource *r, const char *ns,
                          const char *name, VmletTableMode mode)
{
  if (r->id == VMLET_RES_VMOP)
    return vmlet_op_watch(c, ns, name, mode);
  WatchPrint wp = {.mode = mode, .only = name, .resource = r};
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/%s?watch=true", ns, r->plural);
  g_autoptr(GError) error = NULL;
  if (!vmlet_client_watch(c, path, print_event, &wp, &error)) {
    fprintf(stderr, "vmlet get: %s\n", error->message);
    return 1;
  }
  return 0;
}

/* reply: one object (single) or a List. */
static int print_table(const VmletResource *r, JsonNode *reply, gboolean single,
                       VmletTableMode mode, const char *ns)
{
  JsonArray *items = NULL;
  g_autoptr(JsonArray) one = NULL;
  if (single) {
    one = json_array_new();
    json_array_add_element(one, json_node_copy(reply));
    items = one;
  } else {
    items = JSON_NODE_HOLDS_OBJECT(reply) ? jv_array_at(json_node_get_object(reply), "items")
                                          : NULL;
    if (!items) {
      fprintf(stderr, "vmlet get: vmletd's reply has no items list\n");
      return 1;
    }
  }
  g_autoptr(GDateTime) now = g_date_time_new_now_utc();
  g_autoptr(GError) error = NULL;
  g_autofree char *table = format_table(r, items, now, mode, &error);
  if (!table) {
    fprintf(stderr, "vmlet get: %s\n", error->message);
    return 1;
  }
  if (!*table)
    fprintf(stderr, "No resources found in %s namespace.\n", ns);
  fputs(table, stdout);
  return 0;
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
  g_autoptr(GOptionContext) ctx = g_option_context_new(
      "[vm|vmbda|vmop|node] [NAME] - list VMs, attachments, operations or the node like `d8 k get`");
  remote_add_entries(ctx, &o, extra);
  if (!remote_parse(ctx, "get", &argc, &argv, 0, 2))
    return EXIT_USAGE;
  if (argc > 1 && vmlet_is_node_word(argv[1])) {
    if (watch || (output && !g_str_equal(output, "json") && !g_str_equal(output, "wide"))) {
      fprintf(stderr, "vmlet get node: -o json or a table; no -w\n");
      return EXIT_USAGE;
    }
    g_autoptr(VmletClient) c = remote_open("get", &o);
    return c ? vmlet_get_node(c, output) : 1;
  }
  /* kubectl's form: an optional resource type first (a bare NAME is a VM, as before). */
  const VmletResource *r = argc > 1 ? vmlet_resource_lookup(argv[1]) : NULL;
  if (r) {
    argc--;
    argv++;
  } else {
    r = vmlet_resource_of_kind("VirtualMachine");
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
  if (watch && output && !g_str_equal(output, "wide")) {
    fprintf(stderr, "vmlet get: -w prints tables; use the API for a JSON stream\n");
    return EXIT_USAGE;
  }
  g_autoptr(VmletClient) c = remote_open("get", &o);
  if (!c)
    return 1;
  VmletTableMode mode = output ? VMLET_TABLE_WIDE : VMLET_TABLE_NORMAL;
  const char *name = argc > 1 ? argv[1] : NULL;
  if (watch)
    return watch_resource(c, r, o.namespace, name, mode);
  g_autofree char *path = name ? g_strdup_printf(API "/namespaces/%s/%s/%s", o.namespace,
                                                 r->plural, name)
                               : g_strdup_printf(API "/namespaces/%s/%s", o.namespace,
                                                 r->plural);
  g_autoptr(JsonNode) reply = NULL;
  int rc = remote_call("get", c, "GET", path, NULL, 200, &reply);
  if (rc)
    return rc;
  if (output && g_str_equal(output, "json")) {
    print_json(reply);
    return 0;
  }
  g_autoptr(GError) error = NULL;
  if (output && g_str_has_prefix(output, "jsonpath=")) {
    if (!print_jsonpath(reply, output + strlen("jsonpath="), &error)) {
      fprintf(stderr, "vmlet get: %s\n", error->message);
      return EXIT_USAGE;
    }
    return 0;
  }
  return print_table(r, reply, name != NULL, mode, o.namespace);
}

int vmlet_cmd_describe(int argc, char **argv)
{
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("NAME - spec, status and operations");
  remote_add_entries(ctx, &o, NULL);
  if (!remote_parse(ctx, "describe", &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = remote_open("describe", &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", o.namespace,
                                          argv[1]);
  g_autoptr(JsonNode) vm = NULL;
  int rc = remote_call("describe", c, "GET", path, NULL, 200, &vm);
  if (rc)
    return rc;
  JsonObject *root = json_node_get_object(vm);
  JsonObject *st = json_object_get_object_member(root, "status");
  printf("Name:        %s\nNamespace:   %s\nPhase:       %s\nNode:        %s\n", argv[1],
         o.namespace, remote_str(root, "status", "phase"),
         remote_str(root, "status", "nodeName") ? remote_str(root, "status", "nodeName")
                                                : "<none>");
  if (json_object_has_member(root, "spec")) {
    g_autofree char *spec = json_to_string(json_object_get_member(root, "spec"), TRUE);
    printf("Spec:\n%s\n", spec);
  }
  if (json_object_has_member(st, "resources")) {
    g_autofree char *res = json_to_string(json_object_get_member(st, "resources"), TRUE);
    printf("Resources:\n%s\n", res);
  }
  printf("Cgroup:      %s\n", remote_str(root, "status", "cgroup")
                                  ? remote_str(root, "status", "cgroup")
                                  : "<none>");
  printf("Conditions:\n");
  JsonArray *conds = json_object_get_array_member(st, "conditions");
  for (guint i = 0; conds && i < json_array_get_length(conds); i++) {
    JsonObject *cnd = json_array_get_object_element(conds, i);
    printf("  %-12s %-6s %s%s%s\n", remote_str(cnd, "type", NULL), remote_str(cnd, "status", NULL),
           remote_str(cnd, "reason", NULL) ? remote_str(cnd, "reason", NULL) : "",
           remote_str(cnd, "message", NULL) ? ": " : "",
           remote_str(cnd, "message", NULL) ? remote_str(cnd, "message", NULL) : "");
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
    printf("  %s  %s\n", remote_str(t, "timestamp", NULL), remote_str(t, "phase", NULL));
  }
  g_autofree char *ops_path = g_strdup_printf(API "/namespaces/%s/virtualmachineoperations",
                                              o.namespace);
  g_autoptr(JsonNode) ops = NULL;
  if (remote_call("describe", c, "GET", ops_path, NULL, 200, &ops))
    return 1;
  printf("Operations:\n");
  JsonArray *items = ops ? json_object_get_array_member(json_node_get_object(ops), "items") : NULL;
  for (guint i = 0; items && i < json_array_get_length(items); i++) {
    JsonObject *op = json_array_get_object_element(items, i);
    if (g_strcmp0(remote_str(op, "spec", "virtualMachineName"), argv[1]) != 0)
      continue;
    printf("  %s  %-8s %-10s %s\n", remote_str(op, "metadata", "creationTimestamp"),
           remote_str(op, "spec", "type"), remote_str(op, "status", "phase"),
           remote_str(op, "status", "reason") ? remote_str(op, "status", "reason") : "");
  }
  return 0;
}
