#include "vmclass.h"
#include <string.h>

#include "jsonval.h"
#include "quantity.h"

/* DVP serves classes as v1alpha2 and, in newer releases, v1alpha3 with the same fields. */
static const char *const api_versions[] = {VMLET_API_GROUP "/v1alpha2",
                                           VMLET_API_GROUP "/v1alpha3", NULL};
static const char *const cpu_type_names[] = {"Host", "HostPassthrough", "Discovery", "Model",
                                             "Features", NULL};

VmClass *vm_class_ref(VmClass *klass)
{
  g_atomic_int_inc(&klass->refcount);
  return klass;
}

void vm_class_unref(VmClass *klass)
{
  if (!klass || !g_atomic_int_dec_and_test(&klass->refcount))
    return;
  vmlet_meta_clear(&klass->meta);
  g_free(klass->cpu_model);
  g_strfreev(klass->cpu_features);
  if (klass->policies)
    g_array_unref(klass->policies);
  g_free(klass->machine);
  g_free(klass->tcg_cpu_model);
  g_free(klass);
}

/* A QEMU CPU model or feature name: short, and nothing that could split a -cpu argument. */
static gboolean is_cpu_token(const char *s)
{
  if (!*s || strlen(s) > 64)
    return FALSE;
  for (const char *c = s; *c; c++)
    if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_' && *c != '.')
      return FALSE;
  return TRUE;
}

gboolean vm_class_machine_valid(const char *machine)
{
  return g_str_equal(machine, "q35") ||
         (g_str_has_prefix(machine, "pc-q35-") && is_cpu_token(machine));
}

static gboolean get_quantity(VmletDiag *d, JsonObject *o, const char *p, const char *member,
                             guint64 *out)
{
  const char *s = NULL, *why = NULL;
  if (!jv_get_string(d, o, p, member, JV_OPTIONAL, 40, &s))
    return FALSE;
  if (!vmlet_quantity_parse_bytes(s, out, &why)) {
    g_autofree char *mp = jv_path(p, member);
    g_autofree char *q = vmlet_quote_for_message(s);
    vmlet_diag_error(d, mp, "expected %s, found %s", why, q);
    return FALSE;
  }
  return TRUE;
}

static void parse_policy(VmletDiag *d, JsonArray *pols, guint index, const char *p, GArray *out)
{
  JsonObject *o = jv_element_object(d, pols, index, p, "an object");
  if (!o)
    return;
  static const char *const known[] = {"cores", "coreFractions", "dedicatedCores", "memory",
                                      NULL};
  jv_warn_unknown(d, o, p, known);
  VmSizingPolicy pol = {0};
  JsonObject *cores = NULL;
  g_autofree char *cp = jv_path(p, "cores");
  if (jv_get_object(d, o, p, "cores", JV_REQUIRED, &cores)) {
    gint64 min = 0, max = 0;
    gboolean ok = jv_get_int(d, cores, cp, "min", JV_REQUIRED, 1, VM_MAX_CORES, &min);
    ok = jv_get_int(d, cores, cp, "max", JV_REQUIRED, 1, VM_MAX_CORES, &max) && ok;
    if (ok && min > max)
      vmlet_diag_error(d, cp, "expected min <= max, found min %" G_GINT64_FORMAT
                              " and max %" G_GINT64_FORMAT, min, max);
    pol.min_cores = (guint)min;
    pol.max_cores = (guint)max;
  }
  JsonArray *fr = NULL;
  if (jv_get_array(d, o, p, "coreFractions", JV_OPTIONAL, VM_CLASS_MAX_FRACTIONS, &fr)) {
    for (guint i = 0; i < json_array_get_length(fr); i++) {
      JsonNode *n = json_array_get_element(fr, i);
      if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
          json_node_get_int(n) < 1 || json_node_get_int(n) > 100) {
        g_autofree char *ep = g_strdup_printf("%s.coreFractions[%u]", p, i);
        g_autofree char *found = vmlet_json_describe(n);
        vmlet_diag_error(d, ep, "expected an integer percentage from 1 to 100, found %s", found);
        continue;
      }
      pol.fractions[pol.n_fractions++] = (guint)json_node_get_int(n);
    }
  }
  JsonObject *mem = NULL;
  g_autofree char *mp = jv_path(p, "memory");
  if (jv_get_object(d, o, p, "memory", JV_OPTIONAL, &mem)) {
    get_quantity(d, mem, mp, "min", &pol.memory_min);
    get_quantity(d, mem, mp, "max", &pol.memory_max);
    get_quantity(d, mem, mp, "step", &pol.memory_step);
    JsonObject *per = NULL;
    g_autofree char *pp = jv_path(mp, "perCore");
    if (jv_get_object(d, mem, mp, "perCore", JV_OPTIONAL, &per)) {
      get_quantity(d, per, pp, "min", &pol.per_core_min);
      get_quantity(d, per, pp, "max", &pol.per_core_max);
    }
  }
  g_array_append_val(out, pol);
}

VmClass *vm_class_parse(JsonObject *root, VmletDiag *d)
{
  g_autoptr(VmClass) k = g_new0(VmClass, 1);
  k->refcount = 1;
  k->policies = g_array_new(FALSE, TRUE, sizeof(VmSizingPolicy));
  guint errors_before = d->errors->len;

  vmlet_meta_parse(d, root, "VirtualMachineClass", api_versions, &k->meta);
  JsonObject *spec = NULL;
  if (!jv_get_object(d, root, "", "spec", JV_REQUIRED, &spec))
    return NULL;
  static const char *const known[] = {"cpu", "sizingPolicies", "nodeSelector", "tolerations",
                                      "qemu", NULL};
  jv_warn_unknown(d, spec, "spec", known);

  JsonObject *cpu = NULL;
  if (jv_get_object(d, spec, "spec", "cpu", JV_REQUIRED, &cpu)) {
    static const char *const cpu_known[] = {"type", "model", "features", "discovery", NULL};
    jv_warn_unknown(d, cpu, "spec.cpu", cpu_known);
    guint t = 0;
    if (jv_get_enum(d, cpu, "spec.cpu", "type", JV_REQUIRED, cpu_type_names, &t))
      k->cpu_type = (VmCpuType)t;
    const char *model = NULL;
    gboolean need_model = k->cpu_type == VM_CPU_MODEL;
    if (jv_get_string(d, cpu, "spec.cpu", "model", need_model ? JV_REQUIRED : JV_OPTIONAL, 64,
                      &model)) {
      if (!is_cpu_token(model)) {
        g_autofree char *q = vmlet_quote_for_message(model);
        vmlet_diag_error(d, "spec.cpu.model", "expected a QEMU CPU model name, found %s", q);
      } else {
        k->cpu_model = g_strdup(model);
      }
    }
    JsonArray *feats = NULL;
    g_autoptr(GPtrArray) fv = g_ptr_array_new_with_free_func(g_free);
    if (jv_get_array(d, cpu, "spec.cpu", "features",
                     k->cpu_type == VM_CPU_FEATURES ? JV_REQUIRED : JV_OPTIONAL, 128, &feats)) {
      for (guint i = 0; i < json_array_get_length(feats); i++) {
        JsonNode *n = json_array_get_element(feats, i);
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING ||
            !is_cpu_token(json_node_get_string(n))) {
          g_autofree char *ep = g_strdup_printf("spec.cpu.features[%u]", i);
          g_autofree char *found = vmlet_json_describe(n);
          vmlet_diag_error(d, ep, "expected a CPU feature name, found %s", found);
          continue;
        }
        g_ptr_array_add(fv, g_strdup(json_node_get_string(n)));
      }
    }
    g_ptr_array_add(fv, NULL);
    k->cpu_features = (GStrv)g_ptr_array_free(g_steal_pointer(&fv), FALSE);
  }

  JsonArray *pols = NULL;
  if (jv_get_array(d, spec, "spec", "sizingPolicies", JV_OPTIONAL, 64, &pols))
    for (guint i = 0; i < json_array_get_length(pols); i++) {
      g_autofree char *p = g_strdup_printf("spec.sizingPolicies[%u]", i);
      parse_policy(d, pols, i, p, k->policies);
    }

  const char *machine = "q35", *tcg_model = "max";
  JsonObject *qemu = NULL;
  if (jv_get_object(d, spec, "spec", "qemu", JV_OPTIONAL, &qemu)) {
    static const char *const q_known[] = {"machine", "tcgCpuModel", NULL};
    jv_warn_unknown(d, qemu, "spec.qemu", q_known);
    jv_get_string(d, qemu, "spec.qemu", "machine", JV_OPTIONAL, 64, &machine);
    jv_get_string(d, qemu, "spec.qemu", "tcgCpuModel", JV_OPTIONAL, 64, &tcg_model);
    /* Only q35 machines: root ports, AHCI and ACPI hotplug are what the argv relies on. */
    if (!vm_class_machine_valid(machine))
      vmlet_diag_error(d, "spec.qemu.machine",
                       "expected \"q35\" or a versioned \"pc-q35-X.Y\", found \"%s\"", machine);
    if (!is_cpu_token(tcg_model))
      vmlet_diag_error(d, "spec.qemu.tcgCpuModel", "expected a QEMU CPU model name");
  }
  k->machine = g_strdup(machine);
  k->tcg_cpu_model = g_strdup(tcg_model);
  if (d->errors->len != errors_before)
    return NULL;
  return g_steal_pointer(&k);
}

static char *format_fractions(const VmSizingPolicy *p)
{
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < p->n_fractions; i++)
    g_string_append_printf(s, "%s%u%%", i ? ", " : "", p->fractions[i]);
  return g_string_free(s, FALSE);
}

static char *format_core_ranges(const VmClass *k)
{
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < k->policies->len; i++) {
    const VmSizingPolicy *p = &g_array_index(k->policies, VmSizingPolicy, i);
    if (p->min_cores == p->max_cores)
      g_string_append_printf(s, "%s%u", i ? ", " : "", p->min_cores);
    else
      g_string_append_printf(s, "%s%u-%u", i ? ", " : "", p->min_cores, p->max_cores);
  }
  return g_string_free(s, FALSE);
}

static void check_memory(const VmClass *k, const VmSizingPolicy *p, const VmSpec *spec,
                         VmletDiag *d)
{
  guint64 m = spec->memory_bytes;
  guint64 lo = p->memory_min, hi = p->memory_max;
  if (p->per_core_min && p->per_core_min * spec->cores > lo)
    lo = p->per_core_min * spec->cores;
  if (p->per_core_max && (hi == 0 || p->per_core_max * spec->cores < hi))
    hi = p->per_core_max * spec->cores;
  gboolean ok = m >= lo && (hi == 0 || m <= hi) &&
                (p->memory_step == 0 || (m - p->memory_min) % p->memory_step == 0);
  if (ok)
    return;
  g_autofree char *have = vmlet_quantity_format_bytes(m);
  g_autofree char *slo = vmlet_quantity_format_bytes(lo);
  g_autofree char *shi = hi ? vmlet_quantity_format_bytes(hi) : g_strdup("any size");
  g_autofree char *sstep = p->memory_step ? vmlet_quantity_format_bytes(p->memory_step) : NULL;
  vmlet_diag_error(d, "spec.memory.size",
                   "\"%s\" is not allowed by class \"%s\" for %u core%s (allowed: %s to %s%s%s)",
                   have, k->meta.name, spec->cores, spec->cores == 1 ? "" : "s", slo, shi,
                   sstep ? " in steps of " : "", sstep ? sstep : "");
}

gboolean vm_class_check_sizing(const VmClass *k, const VmSpec *spec, VmletDiag *d)
{
  if (k->policies->len == 0)
    return TRUE;
  const VmSizingPolicy *match = NULL;
  for (guint i = 0; i < k->policies->len && !match; i++) {
    const VmSizingPolicy *p = &g_array_index(k->policies, VmSizingPolicy, i);
    if (spec->cores >= p->min_cores && spec->cores <= p->max_cores)
      match = p;
  }
  if (!match) {
    g_autofree char *ranges = format_core_ranges(k);
    vmlet_diag_error(d, "spec.cpu.cores", "%u is not allowed by class \"%s\" (allowed: %s)",
                     spec->cores, k->meta.name, ranges);
    return FALSE;
  }
  guint before = d->errors->len;
  if (match->n_fractions > 0) {
    gboolean found = FALSE;
    for (guint i = 0; i < match->n_fractions; i++)
      found = found || match->fractions[i] == spec->core_fraction;
    if (!found) {
      g_autofree char *allowed = format_fractions(match);
      vmlet_diag_error(d, "spec.cpu.coreFraction",
                       "\"%u%%\" is not allowed by class \"%s\" for %u core%s (allowed: %s)",
                       spec->core_fraction, k->meta.name, spec->cores,
                       spec->cores == 1 ? "" : "s", allowed);
    }
  }
  if (match->memory_min || match->memory_max || match->memory_step || match->per_core_min ||
      match->per_core_max)
    check_memory(k, match, spec, d);
  return d->errors->len == before;
}
