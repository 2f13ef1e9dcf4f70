/* Following VirtualMachineOperations: `vmlet evict|migrate --wait` and `vmlet get vmop -w`.
 * vmletd streams changes of VMs and attachments, not of operations, so both poll; over the
 * node's own socket a GET every half second costs nothing, and a migration's progress
 * moves no faster (vmletd samples QEMU every 500 ms). */
#include <stdio.h>
#include <string.h>

#include "jsonval.h"
#include "operation.h"
#include "remote.h"

#define WAIT_POLL_US (500 * 1000)
#define WATCH_POLL_US (1000 * 1000)

/* "InProgress, 45%, target hv-2": what a progress line and a timeout say. */
static char *op_state(JsonObject *op)
{
  const char *phase = remote_str(op, "status", "phase");
  const char *progress = remote_str(op, "status", "progress");
  const char *target = remote_str(op, "status", "targetNode");
  g_autoptr(GString) s = g_string_new(phase ? phase : "no phase yet");
  if (progress)
    g_string_append_printf(s, ", %s", progress);
  if (target)
    g_string_append_printf(s, ", target %s", target);
  return g_string_free(g_steal_pointer(&s), FALSE);
}

/* The outcome once the operation has ended: 0 Completed, 1 Failed; -1 while it runs. */
static int outcome(const char *cmd, const char *name, JsonObject *op)
{
  const char *phase = remote_str(op, "status", "phase");
  if (g_strcmp0(phase, "Completed") == 0) {
    printf("virtualmachineoperation.virtualization.deckhouse.io/%s completed\n", name);
    return 0;
  }
  if (g_strcmp0(phase, "Failed") == 0) {
    const char *reason = remote_str(op, "status", "reason");
    fprintf(stderr, "vmlet %s: %s failed: %s\n", cmd, name, reason ? reason : "no reason given");
    return 1;
  }
  return -1;
}

int vmlet_op_wait(const char *cmd, VmletClient *c, const char *ns, const char *name,
                  GTimeSpan timeout)
{
  gint64 deadline = timeout > 0 ? g_get_monotonic_time() + timeout : G_MAXINT64;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachineoperations/%s", ns,
                                          name);
  g_autofree char *shown = NULL;
  for (;;) {
    g_autoptr(JsonNode) node = NULL;
    int rc = remote_get(cmd, c, path, &node);
    if (!rc && !node) {
      fprintf(stderr, "vmlet %s: %s was deleted before it ended (a migration it ran is "
                      "cancelled)\n", cmd, name);
      return 1;
    }
    if (rc)
      return rc;
    JsonObject *op = json_node_get_object(node);
    int done = outcome(cmd, name, op);
    if (done >= 0)
      return done;
    g_autofree char *state = op_state(op);
    if (g_strcmp0(state, shown) != 0) {
      printf("%s: %s\n", name, state);
      fflush(stdout);
      g_free(shown);
      shown = g_steal_pointer(&state);
    }
    if (g_get_monotonic_time() + WAIT_POLL_US > deadline) {
      g_autofree char *waited = vmlet_human_duration(timeout);
      fprintf(stderr, "vmlet %s: %s: timed out after %s (%s); the operation goes on: "
                      "`vmlet get vmop %s` shows it, `vmlet delete vmop %s` cancels it\n",
              cmd, name, waited, shown, name, name);
      return 1;
    }
    g_usleep(WAIT_POLL_US);
  }
}

/* One operation's row without the header, or NULL. */
static char *op_row(JsonNode *op, VmletTableMode mode, char **header)
{
  g_autoptr(JsonArray) one = json_array_new();
  json_array_add_element(one, json_node_copy(op));
  g_autoptr(GDateTime) now = g_date_time_new_now_utc();
  g_autofree char *table = vmlet_table_format_vmops(one, now, mode, NULL);
  const char *nl = table ? strchr(table, '\n') : NULL;
  if (!nl)
    return NULL;
  if (header && !*header)
    *header = g_strndup(table, (gsize)(nl - table + 1));
  return g_strdup(nl + 1);
}

/* kubectl get -w prints a row when the object changes; AGE alone changing is not a change,
 * so rows are compared without it (the row printed then shows the age of that moment). */
static char *row_key(JsonNode *op)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT(op) ? json_node_get_object(op) : NULL;
  JsonNode *status = o ? json_object_get_member(o, "status") : NULL;
  g_autofree char *st = status ? json_to_string(status, FALSE) : g_strdup("");
  return g_strdup_printf("%s\n%s", remote_str(o, "spec", "type"), st);
}

/* Prints the rows of the operations whose state differs from seen (name -> row_key). */
static void print_changes(JsonArray *items, const char *only, VmletTableMode mode,
                          GHashTable *seen, char **header)
{
  for (guint i = 0; i < json_array_get_length(items); i++) {
    JsonNode *op = json_array_get_element(items, i);
    const char *name = JSON_NODE_HOLDS_OBJECT(op)
                           ? remote_str(json_node_get_object(op), "metadata", "name")
                           : NULL;
    if (!name || (only && !g_str_equal(name, only)))
      continue;
    g_autofree char *key = row_key(op);
    if (g_strcmp0(g_hash_table_lookup(seen, name), key) == 0)
      continue;
    gboolean first = *header == NULL;
    g_autofree char *row = op_row(op, mode, header);
    if (!row)
      continue;
    if (first)
      fputs(*header, stdout);
    fputs(row, stdout);
    g_hash_table_insert(seen, g_strdup(name), g_steal_pointer(&key));
  }
  fflush(stdout);
}

int vmlet_op_watch(VmletClient *c, const char *ns, const char *only, VmletTableMode mode)
{
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachineoperations", ns);
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autofree char *header = NULL;
  for (;;) {
    g_autoptr(JsonNode) list = NULL;
    int rc = remote_call("get", c, "GET", path, NULL, 200, &list);
    if (rc)
      return rc;
    JsonArray *items = JSON_NODE_HOLDS_OBJECT(list)
                           ? jv_array_at(json_node_get_object(list), "items")
                           : NULL;
    if (!items) {
      fprintf(stderr, "vmlet get: vmletd's reply has no items list\n");
      return 1;
    }
    print_changes(items, only, mode, seen, &header);
    g_usleep(WATCH_POLL_US);
  }
}
