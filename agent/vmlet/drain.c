/* vmlet drain, uncordon and get node: the node's maintenance mode (DVP's
 * `d8 k drain` / `d8 k uncordon`), over vmletd's /node. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "jsonval.h"
#include "quantity.h"
#include "remote.h"

/* How often a drain's progress is asked for (vmletd has no watch stream of the node). */
#define POLL_MS 500

static char *plural_vms(gint64 n)
{
  return g_strdup_printf("%" G_GINT64_FORMAT " VM%s", n, n == 1 ? "" : "s");
}

static JsonObject *drain_of(JsonNode *node)
{
  return jv_object_at(jv_object_at(json_node_get_object(node), "status"), "drain");
}

gboolean vmlet_is_node_word(const char *word)
{
  return g_str_equal(word, "node") || g_str_equal(word, "nodes") || g_str_equal(word, "no");
}

static void print_vm_rows(JsonArray *vms)
{
  guint w = 2;
  for (guint i = 0; vms && i < json_array_get_length(vms); i++) {
    JsonObject *v = json_array_get_object_element(vms, i);
    w = MAX(w, strlen(jv_string_at(v, "namespace")) + 1 + strlen(jv_string_at(v, "name")));
  }
  printf("%-*s   %-11s   %-10s   %s\n", (int)w, "VM", "STATE", "TARGET", "REASON");
  for (guint i = 0; vms && i < json_array_get_length(vms); i++) {
    JsonObject *v = json_array_get_object_element(vms, i);
    g_autofree char *id = g_strdup_printf("%s/%s", jv_string_at(v, "namespace"),
                                          jv_string_at(v, "name"));
    const char *target = jv_string_at(v, "target"), *reason = jv_string_at(v, "reason");
    printf("%-*s   %-11s   %-10s   %s\n", (int)w, id, jv_string_at(v, "state"),
           target ? target : "", reason ? reason : "");
  }
}

/* kubectl get node's row, and the drain's VMs when there was a drain. */
static void print_node(JsonNode *node)
{
  JsonObject *o = json_node_get_object(node);
  JsonObject *st = jv_object_at(o, "status"), *d = drain_of(node);
  const char *name = remote_str(o, "metadata", "name"), *phase = jv_string_at(st, "phase");
  const char *msg = d ? jv_string_at(d, "message") : NULL;
  int w = MAX(4, (int)strlen(name));
  printf("%-*s   %-24s   %-7s   %s\n", w, "NAME", "STATUS", "RUNNING", "DRAIN");
  printf("%-*s   %-24s   %-7" G_GINT64_FORMAT "   %s\n", w, name, phase,
         jv_int_at(st, "running", 0), msg ? msg : "");
  if (jv_string_at(st, "cordonProblem"))
    printf("cordon: %s\n", jv_string_at(st, "cordonProblem"));
  JsonArray *vms = d ? jv_array_at(d, "vms") : NULL;
  if (vms && json_array_get_length(vms)) {
    printf("\n");
    print_vm_rows(vms);
  }
}

int vmlet_get_node(VmletClient *c, const char *output)
{
  g_autoptr(JsonNode) node = NULL;
  int rc = remote_call("get", c, "GET", "/node", NULL, 200, &node);
  if (rc)
    return rc;
  if (output && g_str_equal(output, "json")) {
    g_autofree char *text = json_to_string(node, TRUE);
    printf("%s\n", text);
  } else {
    print_node(node);
  }
  return 0;
}

static void print_plan(JsonNode *plan, gboolean force)
{
  JsonArray *vms = jv_array_at(json_node_get_object(plan), "vms");
  guint evict = 0, bad = 0;
  for (guint i = 0; vms && i < json_array_get_length(vms); i++) {
    JsonObject *v = json_array_get_object_element(vms, i);
    const char *action = jv_string_at(v, "action"), *name = jv_string_at(v, "name");
    if (g_strcmp0(action, "Evict") == 0) {
      JsonArray *peers = jv_array_at(v, "peers");
      GString *list = g_string_new(NULL);
      for (guint k = 0; peers && k < json_array_get_length(peers); k++)
        g_string_append_printf(list, "%s%s", k ? ", " : "",
                               json_array_get_string_element(peers, k));
      printf("%s: would be evicted (peers that fit: %s)\n", name, list->str);
      g_string_free(list, TRUE);
      evict++;
    } else if (g_strcmp0(action, "Unplaceable") == 0) {
      printf("%s: %s: %s\n", name, force ? "would be stopped (--force)" : "cannot be moved",
             jv_string_at(v, "reason"));
      bad++;
    } else {
      printf("%s: %s, stays defined and does not start while cordoned\n", name,
             jv_string_at(v, "phase"));
    }
  }
  g_autofree char *n_evict = plural_vms(evict);
  g_autofree char *n_bad = plural_vms(bad);
  printf("(dry run) %s to evict, %s no peer can take\n", n_evict, n_bad);
}

/* One line per change of a VM's drain state. */
static void print_changes(JsonObject *d, GHashTable *seen)
{
  JsonArray *vms = jv_array_at(d, "vms");
  for (guint i = 0; vms && i < json_array_get_length(vms); i++) {
    JsonObject *v = json_array_get_object_element(vms, i);
    g_autofree char *key = g_strdup_printf("%s/%s", jv_string_at(v, "namespace"),
                                           jv_string_at(v, "name"));
    const char *state = jv_string_at(v, "state");
    if (g_strcmp0(g_hash_table_lookup(seen, key), state) == 0)
      continue;
    const char *op = jv_string_at(v, "operation"), *target = jv_string_at(v, "target"),
               *reason = jv_string_at(v, "reason");
    if (g_str_equal(state, "Moved") && target)
      printf("%s: moved to %s\n", key, target);
    else if (g_str_equal(state, "Evicting"))
      printf("%s: evicting (%s)\n", key, op ? op : "");
    else if (g_str_equal(state, "Pending") && reason)
      printf("%s: to be tried again: %s\n", key, reason);
    else
      printf("%s: %s%s%s\n", key, state, reason ? ": " : "", reason ? reason : "");
    fflush(stdout);
    g_hash_table_replace(seen, g_steal_pointer(&key), g_strdup(state));
  }
}

/* The VMs the drain could not move, on stderr; the exit status. */
static int report_end(JsonObject *d)
{
  JsonArray *vms = jv_array_at(d, "vms");
  gint64 bad = jv_int_at(d, "unplaceable", 0);
  printf("%s\n", jv_string_at(d, "message"));
  if (!bad)
    return 0;
  g_autofree char *n = plural_vms(bad);
  fprintf(stderr, "vmlet drain: %s could not be moved (`vmlet drain --force` stops %s):\n", n,
          bad == 1 ? "it" : "them");
  for (guint i = 0; vms && i < json_array_get_length(vms); i++) {
    JsonObject *v = json_array_get_object_element(vms, i);
    if (g_strcmp0(jv_string_at(v, "state"), "Unplaceable") == 0)
      fprintf(stderr, "  %s/%s: %s\n", jv_string_at(v, "namespace"), jv_string_at(v, "name"),
              jv_string_at(v, "reason"));
  }
  return 1;
}

static int follow(VmletClient *c, GTimeSpan timeout)
{
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  gint64 deadline = timeout ? g_get_monotonic_time() + timeout : 0;
  for (;;) {
    g_autoptr(JsonNode) node = NULL;
    int rc = remote_call("drain", c, "GET", "/node", NULL, 200, &node);
    if (rc)
      return rc;
    JsonObject *d = drain_of(node);
    if (!d) {
      fprintf(stderr, "vmlet drain: the node was uncordoned meanwhile\n");
      return 1;
    }
    print_changes(d, seen);
    if (g_strcmp0(jv_string_at(d, "phase"), "Draining") != 0)
      return report_end(d);
    if (deadline && g_get_monotonic_time() >= deadline) {
      fprintf(stderr, "vmlet drain: timed out: %s (the drain goes on; `vmlet get node` "
              "shows it)\n", jv_string_at(d, "message"));
      return 1;
    }
    g_usleep(POLL_MS * 1000);
  }
}

static const char drain_help[] =
    "Cordons the node (no VM starts here, no migration comes in; kept across restarts) and\n"
    "live-migrates every running VM to a peer: an Evict operation each, evacuation-VM-ID.\n"
    "Waits until the drain ends: exit 0 when the node is empty, 1 listing the VMs no peer\n"
    "can take (--force stops those gracefully, their specs kept). --timeout only stops the\n"
    "waiting. Stopped VMs stay defined and do not start until `vmlet uncordon`.";

int vmlet_cmd_drain(int argc, char **argv)
{
  g_auto(RemoteOptions) ro = {0};
  gboolean force = FALSE, dry_run = FALSE;
  g_autofree char *timeout_s = NULL;
  GOptionEntry extra[] = {
      {"force", 0, 0, G_OPTION_ARG_NONE, &force,
       "stop (gracefully) the VMs no peer can take, keeping their specs", NULL},
      {"dry-run", 0, 0, G_OPTION_ARG_NONE, &dry_run, "print what would happen, change nothing",
       NULL},
      {"timeout", 0, 0, G_OPTION_ARG_STRING, &timeout_s,
       "how long to wait for the drain to end (default: no limit)", "DURATION"},
      {NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- put the node into maintenance");
  g_option_context_set_summary(ctx, drain_help);
  remote_add_entries(ctx, &ro, extra);
  if (!remote_parse(ctx, "drain", &argc, &argv, 0, 0))
    return EXIT_USAGE;
  GTimeSpan timeout = 0;
  const char *why = NULL;
  if (timeout_s && !vmlet_duration_parse(timeout_s, &timeout, &why)) {
    fprintf(stderr, "vmlet drain: --timeout: expected %s, found \"%s\"\n", why, timeout_s);
    return EXIT_USAGE;
  }
  g_autoptr(VmletClient) c = remote_open("drain", &ro);
  if (!c)
    return 1;
  g_autofree char *body = g_strdup_printf("{\"force\": %s, \"dryRun\": %s}",
                                          force ? "true" : "false", dry_run ? "true" : "false");
  g_autoptr(JsonNode) reply = NULL;
  int rc = remote_call("drain", c, "POST", "/node/drain", body, 200, &reply);
  if (rc)
    return rc;
  if (dry_run) {
    print_plan(reply, force);
    return 0;
  }
  printf("node/%s cordoned\n", remote_str(json_node_get_object(reply), "metadata", "name"));
  fflush(stdout);
  return follow(c, timeout);
}

int vmlet_cmd_uncordon(int argc, char **argv)
{
  g_auto(RemoteOptions) ro = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new(
      "- end maintenance: VMs may start here again; evictions not yet switching over are "
      "cancelled");
  remote_add_entries(ctx, &ro, NULL);
  if (!remote_parse(ctx, "uncordon", &argc, &argv, 0, 0))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = remote_open("uncordon", &ro);
  if (!c)
    return 1;
  g_autoptr(JsonNode) reply = NULL;
  int rc = remote_call("uncordon", c, "POST", "/node/uncordon", "{}", 200, &reply);
  if (rc)
    return rc;
  printf("node/%s uncordoned\n", remote_str(json_node_get_object(reply), "metadata", "name"));
  return 0;
}
