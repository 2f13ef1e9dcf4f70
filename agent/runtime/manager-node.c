/* The node as the local API shows it (GET /node, `vmlet get node`): kubectl's
 * SchedulingDisabled while cordoned, and the drain's VMs with their states; what a drain
 * would do (--dry-run); the STATUS= line for systemd. */
#include "manager-private.h"

#include "jsonval.h"
#include "meta.h"
#include "migrations.h"

/* "draining: 2 of 5 VMs left", "drained: 5 VMs moved", "drained: 1 VM could not be
 * moved", or NULL when there was no drain. */
static char *drain_message(const VmletCordon *c)
{
  if (!c || !c->drain_started_us)
    return NULL;
  guint total = c->vms->len, left = vmlet_cordon_left(c);
  g_autofree char *n_total = vmlet_cordon_plural_vms(total);
  if (c->draining)
    return g_strdup_printf("draining: %u of %s left", left, n_total);
  guint bad = vmlet_cordon_count(c, CORDON_VM_UNPLACEABLE);
  guint stopped = vmlet_cordon_count(c, CORDON_VM_STOPPED);
  g_autofree char *n_bad = vmlet_cordon_plural_vms(bad);
  g_autofree char *n_moved = vmlet_cordon_plural_vms(vmlet_cordon_count(c, CORDON_VM_MOVED));
  if (bad)
    return g_strdup_printf("drain failed: %s could not be moved", n_bad);
  if (stopped)
    return g_strdup_printf("drained: %s moved, %u stopped", n_moved, stopped);
  return g_strdup_printf("drained: %s moved", n_moved);
}

static JsonObject *drain_json(const VmletCordon *c)
{
  JsonObject *d = json_object_new();
  guint bad = vmlet_cordon_count(c, CORDON_VM_UNPLACEABLE);
  json_object_set_string_member(d, "phase", c->draining ? "Draining" : bad ? "Failed"
                                                                          : "Drained");
  json_object_set_boolean_member(d, "force", c->force);
  g_autofree char *started = vmlet_timestamp(c->drain_started_us);
  json_object_set_string_member(d, "startTimestamp", started);
  if (c->drain_ended_us) {
    g_autofree char *ended = vmlet_timestamp(c->drain_ended_us);
    json_object_set_string_member(d, "endTimestamp", ended);
  }
  json_object_set_int_member(d, "total", c->vms->len);
  json_object_set_int_member(d, "left", vmlet_cordon_left(c));
  json_object_set_int_member(d, "moved", vmlet_cordon_count(c, CORDON_VM_MOVED));
  json_object_set_int_member(d, "unplaceable", bad);
  json_object_set_int_member(d, "stopped", vmlet_cordon_count(c, CORDON_VM_STOPPED));
  g_autofree char *msg = drain_message(c);
  json_object_set_string_member(d, "message", msg);
  JsonArray *vms = json_array_new();
  for (guint i = 0; i < c->vms->len; i++) {
    const CordonVm *v = c->vms->pdata[i];
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "namespace", v->namespace);
    json_object_set_string_member(o, "name", v->name);
    json_object_set_string_member(o, "state", vmlet_cordon_vm_state_name(v->state));
    if (v->operation)
      json_object_set_string_member(o, "operation", v->operation);
    if (v->target)
      json_object_set_string_member(o, "target", v->target);
    if (v->reason)
      json_object_set_string_member(o, "reason", v->reason);
    json_array_add_object_element(vms, o);
  }
  json_object_set_array_member(d, "vms", vms);
  return d;
}

JsonNode *vmlet_manager_node_json(VmletManager *mgr)
{
  const VmletNode *node = mgr->env.node;
  const VmletCordon *c = mgr->cordon;
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "apiVersion", "v1");
  json_object_set_string_member(root, "kind", "Node");
  JsonObject *md = json_object_new();
  json_object_set_string_member(md, "name", node->name);
  json_object_set_object_member(md, "labels", jv_object_from_strings(node->labels));
  json_object_set_object_member(root, "metadata", md);
  JsonObject *spec = json_object_new();
  json_object_set_boolean_member(spec, "unschedulable", mgr->env.cordoned);
  json_object_set_object_member(root, "spec", spec);
  JsonObject *st = json_object_new();
  /* kubectl's STATUS column: Ready, and SchedulingDisabled while cordoned. */
  json_object_set_string_member(st, "phase", mgr->env.cordoned ? "Ready,SchedulingDisabled"
                                                               : "Ready");
  guint running = 0;
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++)
    running += vmlet_vm_runs_here(vms->pdata[i]);
  json_object_set_int_member(st, "virtualMachines", vms->len);
  json_object_set_int_member(st, "running", running);
  if (c) {
    g_autofree char *since = vmlet_timestamp(c->since_us);
    json_object_set_string_member(st, "cordonedSince", since);
    if (c->drain_started_us)
      json_object_set_object_member(st, "drain", drain_json(c));
  }
  if (mgr->cordon_problem)
    json_object_set_string_member(st, "cordonProblem", mgr->cordon_problem);
  json_object_set_object_member(root, "status", st);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, root);
  return n;
}

/* The peers whose labels fit the VM's placement (names in fit), or why none do. */
static char *fitting_peers(VmletManager *mgr, VmletVm *vm, JsonArray *fit)
{
  VmletMigrations *ms = mgr->env.migrations;
  if (!ms)
    return g_strdup(mgr->env.migrations_problem
                        ? mgr->env.migrations_problem
                        : "migration is not enabled on this node ([migration] in vmlet.conf)");
  g_autoptr(GPtrArray) peers = vmlet_migrations_peers(ms);
  GString *refusals = g_string_new(NULL);
  for (guint i = 0; i < peers->len; i++) {
    const VmletPeer *peer = peers->pdata[i];
    g_autoptr(GHashTable) labels = vmlet_peer_placement_labels(peer);
    g_autofree char *why = NULL;
    if (vm_spec_matches_node(vmlet_vm_get_spec(vm), labels, &why))
      json_array_add_string_element(fit, peer->name);
    else
      g_string_append_printf(refusals, "%s%s: %s", refusals->len ? "; " : "", peer->name, why);
  }
  if (json_array_get_length(fit) > 0) {
    g_string_free(refusals, TRUE);
    return NULL;
  }
  if (!refusals->len)
    g_string_append(refusals, "no migration peers are configured (<config-dir>/peers.d)");
  g_string_prepend(refusals, "no peer can take the VM: ");
  return g_string_free(refusals, FALSE);
}

JsonNode *vmlet_manager_drain_plan(VmletManager *mgr)
{
  JsonObject *root = json_object_new();
  json_object_set_string_member(root, "node", mgr->env.node->name);
  json_object_set_boolean_member(root, "dryRun", TRUE);
  JsonArray *items = json_array_new();
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmletVm *vm = vms->pdata[i];
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "namespace", vmlet_vm_get_namespace(vm));
    json_object_set_string_member(o, "name", vmlet_vm_get_name(vm));
    json_object_set_string_member(o, "phase", vm_phase_name(vmlet_vm_get_phase(vm)));
    if (!vmlet_vm_runs_here(vm) || !vmlet_vm_get_spec(vm)) {
      json_object_set_string_member(o, "action", "Stays");
      json_object_set_string_member(o, "reason", "not running: stays defined, does not start "
                                                 "while the node is cordoned");
    } else {
      JsonArray *fit = json_array_new();
      g_autofree char *why = fitting_peers(mgr, vm, fit);
      json_object_set_string_member(o, "action", why ? "Unplaceable" : "Evict");
      json_object_set_array_member(o, "peers", fit);
      if (why)
        json_object_set_string_member(o, "reason", why);
    }
    json_array_add_object_element(items, o);
  }
  json_object_set_array_member(root, "vms", items);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, root);
  return n;
}

char *vmlet_manager_summary(VmletManager *mgr)
{
  guint counts[VM_PHASE_MIGRATING + 1] = {0};
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, mgr->vms);
  while (g_hash_table_iter_next(&it, NULL, &v))
    counts[vmlet_vm_get_phase(v)]++;
  GString *s = g_string_new(NULL);
  g_autofree char *drain = drain_message(mgr->cordon);
  if (drain)
    g_string_append_printf(s, "%s; ", drain);
  else if (mgr->env.cordoned)
    g_string_append(s, "cordoned; ");
  g_autofree char *total = vmlet_cordon_plural_vms(g_hash_table_size(mgr->vms));
  g_string_append(s, total);
  const char *sep = ": ";
  for (guint p = 0; p <= VM_PHASE_MIGRATING; p++)
    if (counts[p]) {
      g_string_append_printf(s, "%s%u %s", sep, counts[p], vm_phase_name((VmPhase)p));
      sep = ", ";
    }
  return g_string_free(s, FALSE);
}
