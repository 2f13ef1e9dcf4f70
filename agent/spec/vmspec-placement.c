/* Placement: the spec's required node affinity parsed, and matched against a node's labels
 * (with nodeSelector) for this node and for the choice of a migration target. */
#include "vmspec-private.h"

#include <stdlib.h>
#include <string.h>

#include "jsonval.h"

static const char *const selector_op_names[] = {"In", "NotIn", "Exists", "DoesNotExist",
                                                "Gt", "Lt", NULL};

static void requirement_free(gpointer p)
{
  VmSelectorRequirement *r = p;
  g_free(r->key);
  g_strfreev(r->values);
  g_free(r);
}

void vm_selector_term_free(gpointer p)
{
  VmSelectorTerm *t = p;
  g_ptr_array_unref(t->requirements);
  g_free(t);
}

static VmSelectorRequirement *parse_requirement(VmletDiag *d, JsonArray *exprs, guint index,
                                                const char *p)
{
  JsonObject *o = jv_element_object(d, exprs, index, p, "an object with key, operator and values");
  if (!o)
    return NULL;
  static const char *const known[] = {"key", "operator", "values", NULL};
  jv_warn_unknown(d, o, p, known);
  const char *key = NULL;
  guint op = 0;
  JsonArray *values = NULL;
  gboolean ok = jv_get_string(d, o, p, "key", JV_REQUIRED, 317, &key);
  ok = jv_get_enum(d, o, p, "operator", JV_REQUIRED, selector_op_names, &op) && ok;
  jv_get_array(d, o, p, "values", JV_OPTIONAL, 64, &values);
  if (!ok)
    return NULL;
  g_autoptr(GPtrArray) vals = g_ptr_array_new_with_free_func(g_free);
  guint n = values ? json_array_get_length(values) : 0;
  for (guint i = 0; i < n; i++) {
    JsonNode *v = json_array_get_element(values, i);
    if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING ||
        strlen(json_node_get_string(v)) > 63) {
      g_autofree char *vp = g_strdup_printf("%s.values[%u]", p, i);
      g_autofree char *found = vmlet_json_describe(v);
      vmlet_diag_error(d, vp, "expected a label value (a string of at most 63 bytes), found %s",
                       found);
      return NULL;
    }
    g_ptr_array_add(vals, g_strdup(json_node_get_string(v)));
  }
  /* Kubernetes: In/NotIn need values; Exists/DoesNotExist take none; Gt/Lt exactly one integer. */
  g_autofree char *vp = jv_path(p, "values");
  switch ((VmSelectorOperator)op) {
  case VM_SELECTOR_IN:
  case VM_SELECTOR_NOT_IN:
    if (n == 0) {
      vmlet_diag_error(d, vp, "expected at least one value for operator %s, found none",
                       selector_op_names[op]);
      return NULL;
    }
    break;
  case VM_SELECTOR_EXISTS:
  case VM_SELECTOR_DOES_NOT_EXIST:
    if (n != 0) {
      vmlet_diag_error(d, vp, "expected no values for operator %s, found %u",
                       selector_op_names[op], n);
      return NULL;
    }
    break;
  case VM_SELECTOR_GT:
  case VM_SELECTOR_LT: {
    char *end = NULL;
    if (n != 1 || (g_ascii_strtoll(vals->pdata[0], &end, 10), *end != '\0') ||
        !*(char *)vals->pdata[0]) {
      vmlet_diag_error(d, vp, "expected exactly one integer value for operator %s",
                       selector_op_names[op]);
      return NULL;
    }
    break;
  }
  }
  g_ptr_array_add(vals, NULL);
  VmSelectorRequirement *r = g_new0(VmSelectorRequirement, 1);
  r->key = g_strdup(key);
  r->op = (VmSelectorOperator)op;
  r->values = (GStrv)g_ptr_array_free(g_steal_pointer(&vals), FALSE);
  return r;
}

void vm_spec_parse_affinity(VmletDiag *d, JsonObject *spec_obj, VmSpec *vm)
{
  JsonObject *aff = NULL;
  if (!jv_get_object(d, spec_obj, "spec", "affinity", JV_OPTIONAL, &aff))
    return;
  static const char *const known[] = {"nodeAffinity", "virtualMachineAndPodAffinity",
                                      "virtualMachineAndPodAntiAffinity", NULL};
  jv_warn_unknown(d, aff, "spec.affinity", known);
  JsonObject *tmp = NULL;
  if (jv_get_object(d, aff, "spec.affinity", "virtualMachineAndPodAffinity", JV_OPTIONAL, &tmp) ||
      jv_get_object(d, aff, "spec.affinity", "virtualMachineAndPodAntiAffinity", JV_OPTIONAL,
                    &tmp))
    vmlet_diag_warn(d, "spec.affinity",
                    "VM-to-VM (anti-)affinity is accepted but not acted on by a single node");
  JsonObject *na = NULL;
  if (!jv_get_object(d, aff, "spec.affinity", "nodeAffinity", JV_OPTIONAL, &na))
    return;
  static const char *const na_known[] = {"requiredDuringSchedulingIgnoredDuringExecution",
                                         "preferredDuringSchedulingIgnoredDuringExecution", NULL};
  jv_warn_unknown(d, na, "spec.affinity.nodeAffinity", na_known);
  JsonArray *pref = NULL;
  jv_get_array(d, na, "spec.affinity.nodeAffinity",
               "preferredDuringSchedulingIgnoredDuringExecution", JV_OPTIONAL, 64, &pref);
  JsonObject *req = NULL;
  const char *rp = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution";
  if (!jv_get_object(d, na, "spec.affinity.nodeAffinity",
                     "requiredDuringSchedulingIgnoredDuringExecution", JV_OPTIONAL, &req))
    return;
  JsonArray *terms = NULL;
  if (!jv_get_array(d, req, rp, "nodeSelectorTerms", JV_REQUIRED, 64, &terms))
    return;
  for (guint i = 0; i < json_array_get_length(terms); i++) {
    g_autofree char *tp = g_strdup_printf("%s.nodeSelectorTerms[%u]", rp, i);
    JsonObject *to = jv_element_object(d, terms, i, tp, "an object with matchExpressions");
    if (!to)
      continue;
    static const char *const t_known[] = {"matchExpressions", "matchFields", NULL};
    jv_warn_unknown(d, to, tp, t_known);
    JsonArray *mf = NULL;
    if (jv_get_array(d, to, tp, "matchFields", JV_OPTIONAL, 64, &mf) &&
        json_array_get_length(mf) > 0) {
      g_autofree char *mp = jv_path(tp, "matchFields");
      vmlet_diag_error(d, mp, "matchFields is not supported by vmlet; use matchExpressions on "
                              "node labels");
    }
    JsonArray *exprs = NULL;
    VmSelectorTerm *term = g_new0(VmSelectorTerm, 1);
    term->requirements = g_ptr_array_new_with_free_func(requirement_free);
    g_ptr_array_add(vm->required_terms, term);
    if (!jv_get_array(d, to, tp, "matchExpressions", JV_OPTIONAL, 64, &exprs))
      continue;
    for (guint j = 0; j < json_array_get_length(exprs); j++) {
      g_autofree char *ep = g_strdup_printf("%s.matchExpressions[%u]", tp, j);
      VmSelectorRequirement *r = parse_requirement(d, exprs, j, ep);
      if (r)
        g_ptr_array_add(term->requirements, r);
    }
  }
}

static gboolean requirement_matches(const VmSelectorRequirement *r, GHashTable *labels)
{
  const char *value = g_hash_table_lookup(labels, r->key);
  switch (r->op) {
  case VM_SELECTOR_IN:
    return value && g_strv_contains((const char *const *)r->values, value);
  case VM_SELECTOR_NOT_IN:
    return !value || !g_strv_contains((const char *const *)r->values, value);
  case VM_SELECTOR_EXISTS:
    return value != NULL;
  case VM_SELECTOR_DOES_NOT_EXIST:
    return value == NULL;
  case VM_SELECTOR_GT:
  case VM_SELECTOR_LT: {
    char *end = NULL;
    if (!value)
      return FALSE;
    gint64 have = g_ascii_strtoll(value, &end, 10);
    if (!*value || *end)
      return FALSE;
    gint64 want = g_ascii_strtoll(r->values[0], NULL, 10);
    return r->op == VM_SELECTOR_GT ? have > want : have < want;
  }
  }
  return FALSE;
}

gboolean vm_spec_matches_node(const VmSpec *spec, GHashTable *node_labels, char **why)
{
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, spec->node_selector);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    const char *have = g_hash_table_lookup(node_labels, k);
    if (!have || !g_str_equal(have, v)) {
      if (why)
        *why = g_strdup_printf("spec.nodeSelector: node has %s=%s, the VM needs %s=%s",
                               (char *)k, have ? have : "(unset)", (char *)k, (char *)v);
      return FALSE;
    }
  }
  if (spec->required_terms->len == 0)
    return TRUE;
  for (guint i = 0; i < spec->required_terms->len; i++) {
    VmSelectorTerm *t = spec->required_terms->pdata[i];
    gboolean all = TRUE;
    for (guint j = 0; all && j < t->requirements->len; j++)
      all = requirement_matches(t->requirements->pdata[j], node_labels);
    /* Kubernetes: an empty term matches no node. */
    if (all && t->requirements->len > 0)
      return TRUE;
  }
  if (why)
    *why = g_strdup("spec.affinity.nodeAffinity: no required nodeSelectorTerm matches this "
                    "node's labels");
  return FALSE;
}
