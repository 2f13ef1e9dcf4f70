#include "vmspec-private.h"

#include <stdlib.h>
#include <string.h>

#include "jsonval.h"
#include "quantity.h"

static const char *const api_versions[] = {VMLET_API_GROUP "/v1alpha2", NULL};

static const char *const run_policy_names[] = {"AlwaysOnUnlessStoppedManually", "AlwaysOn",
                                               "Manual", "AlwaysOff", NULL};
static const char *const approval_names[] = {"Manual", "Automatic", NULL};
static const char *const migration_policy_names[] = {"AlwaysSafe", "PreferSafe", "AlwaysForced",
                                                     "PreferForced", NULL};
static const char *const bootloader_names[] = {"BIOS", "EFI", "EFIWithSecureBoot", NULL};
static const char *const os_type_names[] = {"Generic", "Windows", NULL};
static const char *const block_kind_names[] = {"VirtualDisk", "VirtualImage",
                                               "ClusterVirtualImage", NULL};
static const char *const provisioning_names[] = {"UserData", "UserDataRef", "SysprepRef", NULL};

/* Fields of the DVP spec that vmlet reads and acts on. */
static const char *const spec_fields[] = {
    "virtualMachineClassName", "cpu", "memory", "blockDeviceRefs", "provisioning", "runPolicy",
    "disruptions", "bootloader", "osType", "terminationGracePeriodSeconds", "nodeSelector",
    "affinity", "virtualMachineIPAddressName", "enableParavirtualization", "liveMigrationPolicy",
    /* DVP fields accepted but not acted on by a single node (warned below). */
    "tolerations", "priorityClassName", "topologySpreadConstraints",
    "networks", NULL};
static const char *const inert_spec_fields[] = {"tolerations", "priorityClassName",
                                                "topologySpreadConstraints", "networks", NULL};

const char *vm_block_kind_name(VmBlockKind kind)
{
  return block_kind_names[kind];
}

const char *vm_run_policy_name(VmRunPolicy policy)
{
  return run_policy_names[policy];
}

static void block_ref_free(gpointer p)
{
  VmBlockDeviceRef *r = p;
  g_free(r->name);
  g_free(r);
}

VmSpec *vm_spec_ref(VmSpec *spec)
{
  g_atomic_int_inc(&spec->refcount);
  return spec;
}

void vm_spec_unref(VmSpec *spec)
{
  if (!spec || !g_atomic_int_dec_and_test(&spec->refcount))
    return;
  vmlet_meta_clear(&spec->meta);
  g_free(spec->class_name);
  g_ptr_array_unref(spec->block_devices);
  g_free(spec->user_data);
  g_free(spec->provisioning_secret);
  g_hash_table_unref(spec->node_selector);
  g_ptr_array_unref(spec->required_terms);
  g_free(spec->ip_address_name);
  if (spec->spec_json)
    json_node_unref(spec->spec_json);
  g_free(spec);
}

static void parse_cpu(VmletDiag *d, JsonObject *spec_obj, VmSpec *vm)
{
  JsonObject *cpu = NULL;
  if (!jv_get_object(d, spec_obj, "spec", "cpu", JV_REQUIRED, &cpu))
    return;
  static const char *const known[] = {"cores", "coreFraction", NULL};
  jv_warn_unknown(d, cpu, "spec.cpu", known);
  gint64 cores = 0;
  if (jv_get_int(d, cpu, "spec.cpu", "cores", JV_REQUIRED, 1, VM_MAX_CORES, &cores)) {
    /* DVP splits more than 16 cores evenly over 2, 4 or 8 sockets (docs/internal/
     * cpu_cores_count.md in deckhouse/virtualization), so other counts are refused. */
    guint step = cores <= 16 ? 1 : cores <= 32 ? 2 : cores <= 64 ? 4 : 8;
    if (cores % step != 0)
      vmlet_diag_error(d, "spec.cpu.cores",
                       "expected a multiple of %u above %u cores (the cores are split evenly "
                       "over %u sockets), found %" G_GINT64_FORMAT,
                       step, step == 2 ? 16 : step == 4 ? 32 : 64, step, cores);
    else
      vm->cores = (guint)cores;
  }
  const char *fraction = NULL;
  vm->core_fraction = 100;
  JsonNode *fnode = json_object_get_member(cpu, "coreFraction");
  if (fnode && JSON_NODE_HOLDS_VALUE(fnode) && json_node_get_value_type(fnode) == G_TYPE_INT64) {
    /* A bare number is the most likely slip: the class lists fractions as integers. */
    vmlet_diag_error(d, "spec.cpu.coreFraction",
                     "expected a percentage string such as \"%" G_GINT64_FORMAT "%%\", found %"
                     G_GINT64_FORMAT, json_node_get_int(fnode), json_node_get_int(fnode));
  } else if (jv_get_string(d, cpu, "spec.cpu", "coreFraction", JV_OPTIONAL, 16, &fraction)) {
    /* ^(100|[1-9][0-9]?)%$ */
    gsize n = strlen(fraction);
    gboolean ok = n >= 2 && n <= 4 && fraction[n - 1] == '%' && fraction[0] != '0';
    for (gsize i = 0; ok && i + 1 < n; i++)
      ok = g_ascii_isdigit(fraction[i]);
    guint value = ok ? (guint)atoi(fraction) : 0;
    if (!ok || value < 1 || value > 100) {
      g_autofree char *q = vmlet_quote_for_message(fraction);
      vmlet_diag_error(d, "spec.cpu.coreFraction",
                       "expected a percentage from \"1%%\" to \"100%%\", found %s", q);
    } else {
      vm->core_fraction = value;
    }
  }
}

static void parse_memory(VmletDiag *d, JsonObject *spec_obj, VmSpec *vm)
{
  JsonObject *mem = NULL;
  if (!jv_get_object(d, spec_obj, "spec", "memory", JV_REQUIRED, &mem))
    return;
  static const char *const known[] = {"size", NULL};
  jv_warn_unknown(d, mem, "spec.memory", known);
  JsonNode *node = json_object_get_member(mem, "size");
  if (!node || JSON_NODE_HOLDS_NULL(node)) {
    vmlet_diag_error(d, "spec.memory.size",
                     "expected a Kubernetes quantity such as \"1Gi\", found nothing (the field is "
                     "required)");
    return;
  }
  /* A quantity is a string in YAML-converted specs but may be a bare integer in JSON. */
  g_autofree char *text = NULL;
  if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING)
    text = g_strdup(json_node_get_string(node));
  else if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_INT64)
    text = g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(node));
  const char *why = NULL;
  guint64 bytes = 0;
  if (!text || !vmlet_quantity_parse_bytes(text, &bytes, &why)) {
    g_autofree char *found = vmlet_json_describe(node);
    vmlet_diag_error(d, "spec.memory.size", "expected %s, found %s",
                     why ? why : "a Kubernetes quantity", found);
    return;
  }
  /* QEMU cannot run a guest in less; 16 TiB is beyond any host vmlet targets. */
  const guint64 min = 16ull << 20, max = 16ull << 40;
  if (bytes < min || bytes > max) {
    g_autofree char *q = vmlet_quote_for_message(text);
    vmlet_diag_error(d, "spec.memory.size", "expected from 16Mi to 16Ti, found %s", q);
    return;
  }
  vm->memory_bytes = bytes;
}

static void parse_block_devices(VmletDiag *d, JsonObject *spec_obj, VmSpec *vm)
{
  JsonArray *arr = NULL;
  if (!jv_get_array(d, spec_obj, "spec", "blockDeviceRefs", JV_REQUIRED, VM_MAX_BLOCK_DEVICES,
                    &arr))
    return;
  guint n = json_array_get_length(arr);
  if (n == 0) {
    vmlet_diag_error(d, "spec.blockDeviceRefs", "expected 1 to %d entries, found none",
                     VM_MAX_BLOCK_DEVICES);
    return;
  }
  for (guint i = 0; i < n; i++) {
    g_autofree char *p = g_strdup_printf("spec.blockDeviceRefs[%u]", i);
    JsonObject *o = jv_element_object(d, arr, i, p, "an object with kind and name");
    if (!o)
      continue;
    static const char *const known[] = {"kind", "name", NULL};
    jv_warn_unknown(d, o, p, known);
    guint kind = 0;
    const char *name = NULL;
    gboolean ok = jv_get_enum(d, o, p, "kind", JV_REQUIRED, block_kind_names, &kind);
    ok = vmlet_get_name(d, o, p, "name", JV_REQUIRED, &name) && ok;
    if (!ok)
      continue;
    for (guint j = 0; j < vm->block_devices->len; j++) {
      VmBlockDeviceRef *prev = vm->block_devices->pdata[j];
      if (prev->kind == kind && g_str_equal(prev->name, name)) {
        vmlet_diag_error(d, p, "%s \"%s\" is already listed in this list", block_kind_names[kind],
                         name);
        ok = FALSE;
      }
    }
    if (!ok)
      continue;
    VmBlockDeviceRef *r = g_new0(VmBlockDeviceRef, 1);
    r->kind = kind;
    r->name = g_strdup(name);
    g_ptr_array_add(vm->block_devices, r);
  }
}

/* {kind: Secret, name} under spec.provisioning.<member>. */
static const char *parse_secret_ref(VmletDiag *d, JsonObject *prov, const char *member)
{
  g_autofree char *p = jv_path("spec.provisioning", member);
  JsonObject *ref = NULL;
  if (!jv_get_object(d, prov, "spec.provisioning", member, JV_REQUIRED, &ref))
    return NULL;
  static const char *const known[] = {"kind", "name", NULL};
  jv_warn_unknown(d, ref, p, known);
  static const char *const kinds[] = {"Secret", NULL};
  guint k;
  const char *name = NULL;
  gboolean ok = jv_get_enum(d, ref, p, "kind", JV_REQUIRED, kinds, &k);
  ok = vmlet_get_name(d, ref, p, "name", JV_REQUIRED, &name) && ok;
  return ok ? name : NULL;
}

static void parse_provisioning(VmletDiag *d, JsonObject *spec_obj, VmSpec *vm)
{
  JsonObject *prov = NULL;
  vm->provisioning = VM_PROVISIONING_NONE;
  if (!jv_get_object(d, spec_obj, "spec", "provisioning", JV_OPTIONAL, &prov))
    return;
  static const char *const known[] = {"type", "userData", "userDataRef", "sysprepRef", NULL};
  jv_warn_unknown(d, prov, "spec.provisioning", known);
  guint type = 0;
  if (!jv_get_enum(d, prov, "spec.provisioning", "type", JV_REQUIRED, provisioning_names, &type))
    return;
  /* The three sources are mutually exclusive: exactly the one named by type may be set. */
  static const char *const members[] = {"userData", "userDataRef", "sysprepRef"};
  for (guint i = 0; i < G_N_ELEMENTS(members); i++) {
    JsonNode *other = json_object_get_member(prov, members[i]);
    if (i != type && other && !JSON_NODE_HOLDS_NULL(other)) {
      g_autofree char *p = jv_path("spec.provisioning", members[i]);
      vmlet_diag_error(d, p, "must not be set when type is %s (provisioning sources are "
                             "mutually exclusive)", provisioning_names[type]);
    }
  }
  switch ((VmProvisioningType)(type + 1)) {
  case VM_PROVISIONING_USER_DATA: {
    const char *ud = NULL;
    if (!jv_get_string(d, prov, "spec.provisioning", "userData", JV_REQUIRED,
                       VM_MAX_USER_DATA_BYTES, &ud))
      return;
    if (!*ud) {
      vmlet_diag_error(d, "spec.provisioning.userData", "expected cloud-init user-data, found \"\"");
      return;
    }
    if (!g_utf8_validate(ud, -1, NULL)) {
      vmlet_diag_error(d, "spec.provisioning.userData", "expected UTF-8 text");
      return;
    }
    vm->user_data = g_strdup(ud);
    break;
  }
  case VM_PROVISIONING_USER_DATA_REF:
    vm->provisioning_secret = g_strdup(parse_secret_ref(d, prov, "userDataRef"));
    if (!vm->provisioning_secret)
      return;
    break;
  case VM_PROVISIONING_SYSPREP_REF:
    vm->provisioning_secret = g_strdup(parse_secret_ref(d, prov, "sysprepRef"));
    if (!vm->provisioning_secret)
      return;
    break;
  case VM_PROVISIONING_NONE:
    g_assert_not_reached();
  }
  vm->provisioning = (VmProvisioningType)(type + 1);
}

static void default_string(JsonObject *o, const char *member, const char *value)
{
  if (!json_object_has_member(o, member) || json_object_get_null_member(o, member))
    json_object_set_string_member(o, member, value);
}

static JsonObject *default_object(JsonObject *o, const char *member)
{
  JsonNode *n = json_object_get_member(o, member);
  if (!n || !JSON_NODE_HOLDS_OBJECT(n)) {
    json_object_set_object_member(o, member, json_object_new());
    n = json_object_get_member(o, member);
  }
  return json_node_get_object(n);
}

/* The spec as the cluster would store it: defaults written in, as Kubernetes defaulting
 * does on admission, so status output shows them and a later comparison of two specs does
 * not see "absent" and "the default" as a change. */
static void apply_defaults(VmSpec *vm)
{
  JsonNode *copy = json_node_copy(vm->spec_json);
  JsonObject *spec = json_node_get_object(copy);
  default_string(default_object(spec, "cpu"), "coreFraction", "100%");
  default_string(spec, "runPolicy", "AlwaysOnUnlessStoppedManually");
  default_string(default_object(spec, "disruptions"), "restartApprovalMode", "Manual");
  default_string(spec, "bootloader", "BIOS");
  default_string(spec, "osType", "Generic");
  if (!json_object_has_member(spec, "terminationGracePeriodSeconds"))
    json_object_set_int_member(spec, "terminationGracePeriodSeconds",
                               VM_DEFAULT_TERMINATION_GRACE_SECONDS);
  if (!json_object_has_member(spec, "enableParavirtualization"))
    json_object_set_boolean_member(spec, "enableParavirtualization", TRUE);
  json_node_unref(vm->spec_json);
  vm->spec_json = copy;
}

VmSpec *vm_spec_parse(JsonObject *root, VmletDiag *d)
{
  g_autoptr(VmSpec) vm = g_new0(VmSpec, 1);
  vm->refcount = 1;
  vm->block_devices = g_ptr_array_new_with_free_func(block_ref_free);
  vm->required_terms = g_ptr_array_new_with_free_func(vm_selector_term_free);
  guint errors_before = d->errors->len;

  vmlet_meta_parse(d, root, "VirtualMachine", api_versions, &vm->meta);
  JsonObject *spec = NULL;
  if (!jv_get_object(d, root, "", "spec", JV_REQUIRED, &spec)) {
    vm->node_selector = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return NULL;
  }
  vm->spec_json = json_node_ref(json_object_get_member(root, "spec"));
  jv_warn_unknown(d, spec, "spec", spec_fields);
  for (guint i = 0; inert_spec_fields[i]; i++)
    if (json_object_has_member(spec, inert_spec_fields[i])) {
      g_autofree char *p = jv_path("spec", inert_spec_fields[i]);
      vmlet_diag_warn(d, p, "accepted but not acted on by vmlet");
    }

  const char *class_name = NULL;
  if (vmlet_get_name(d, spec, "spec", "virtualMachineClassName", JV_REQUIRED, &class_name))
    vm->class_name = g_strdup(class_name);
  parse_cpu(d, spec, vm);
  parse_memory(d, spec, vm);
  parse_block_devices(d, spec, vm);
  parse_provisioning(d, spec, vm);

  guint v = 0;
  vm->run_policy = VM_RUN_POLICY_ALWAYS_ON_UNLESS_STOPPED_MANUALLY;
  if (jv_get_enum(d, spec, "spec", "runPolicy", JV_OPTIONAL, run_policy_names, &v))
    vm->run_policy = (VmRunPolicy)v;
  vm->restart_approval = VM_RESTART_APPROVAL_MANUAL;
  JsonObject *disruptions = NULL;
  if (jv_get_object(d, spec, "spec", "disruptions", JV_OPTIONAL, &disruptions)) {
    static const char *const known[] = {"restartApprovalMode", NULL};
    jv_warn_unknown(d, disruptions, "spec.disruptions", known);
    if (jv_get_enum(d, disruptions, "spec.disruptions", "restartApprovalMode", JV_OPTIONAL,
                    approval_names, &v))
      vm->restart_approval = (VmRestartApproval)v;
  }
  vm->migration_policy = VM_MIGRATION_PREFER_SAFE;
  if (jv_get_enum(d, spec, "spec", "liveMigrationPolicy", JV_OPTIONAL, migration_policy_names,
                  &v))
    vm->migration_policy = (VmMigrationPolicy)v;
  vm->bootloader = VM_BOOTLOADER_BIOS;
  if (jv_get_enum(d, spec, "spec", "bootloader", JV_OPTIONAL, bootloader_names, &v))
    vm->bootloader = (VmBootloader)v;
  vm->os_type = VM_OS_GENERIC;
  if (jv_get_enum(d, spec, "spec", "osType", JV_OPTIONAL, os_type_names, &v))
    vm->os_type = (VmOsType)v;
  vm->paravirtualization = TRUE;
  jv_get_bool(d, spec, "spec", "enableParavirtualization", JV_OPTIONAL, &vm->paravirtualization);
  gint64 grace = VM_DEFAULT_TERMINATION_GRACE_SECONDS;
  jv_get_int(d, spec, "spec", "terminationGracePeriodSeconds", JV_OPTIONAL, 0, 86400, &grace);
  vm->termination_grace_seconds = (guint)grace;
  if (!jv_get_string_map(d, spec, "spec", "nodeSelector", 64, 63, &vm->node_selector))
    vm->node_selector = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  vm_spec_parse_affinity(d, spec, vm);
  const char *ip = NULL;
  if (vmlet_get_name(d, spec, "spec", "virtualMachineIPAddressName", JV_OPTIONAL, &ip))
    vm->ip_address_name = g_strdup(ip);

  if (d->errors->len != errors_before)
    return NULL;
  apply_defaults(vm);
  return g_steal_pointer(&vm);
}

