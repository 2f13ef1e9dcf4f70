#include <string.h>

#include "jsonval.h"
#include "vmspec.h"

static VmSpec *parse(const char *text, VmletDiag **out_diag)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) root = vmlet_json_parse("vm.json", text, -1, &error);
  g_assert_no_error(error);
  VmletDiag *d = vmlet_diag_new("vm.json");
  VmSpec *vm = vm_spec_parse(json_node_get_object(root), d);
  *out_diag = d;
  return vm;
}

#define HEADER "\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualMachine\", "

static void test_defaults(void)
{
  g_autoptr(VmletDiag) d = NULL;
  g_autoptr(VmSpec) vm = parse("{" HEADER "\"metadata\": {\"name\": \"a\"}, \"spec\": {"
                               "\"virtualMachineClassName\": \"host\", \"cpu\": {\"cores\": 2}, "
                               "\"memory\": {\"size\": \"512Mi\"}, \"blockDeviceRefs\": "
                               "[{\"kind\": \"VirtualDisk\", \"name\": \"d\"}]}}", &d);
  g_assert_nonnull(vm);
  g_assert_cmpuint(d->warnings->len, ==, 0);
  g_assert_cmpstr(vm->meta.namespace, ==, "default");
  g_assert_cmpuint(vm->cores, ==, 2);
  g_assert_cmpuint(vm->core_fraction, ==, 100);
  g_assert_cmpuint(vm->memory_bytes, ==, 512ull << 20);
  g_assert_cmpint(vm->run_policy, ==, VM_RUN_POLICY_ALWAYS_ON_UNLESS_STOPPED_MANUALLY);
  g_assert_cmpint(vm->restart_approval, ==, VM_RESTART_APPROVAL_MANUAL);
  g_assert_cmpint(vm->bootloader, ==, VM_BOOTLOADER_BIOS);
  g_assert_cmpint(vm->os_type, ==, VM_OS_GENERIC);
  g_assert_cmpint(vm->provisioning, ==, VM_PROVISIONING_NONE);
  g_assert_cmpuint(vm->termination_grace_seconds, ==, 60);
  g_assert_true(vm->paravirtualization);
  g_assert_null(vm->ip_address_name);
  g_assert_cmpuint(vm->required_terms->len, ==, 0);
  /* The stored spec carries the defaults, as the cluster's copy would. */
  JsonObject *sj = json_node_get_object(vm->spec_json);
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(sj, "cpu"),
                                                "coreFraction"), ==, "100%");
  g_assert_cmpstr(json_object_get_string_member(sj, "runPolicy"), ==,
                  "AlwaysOnUnlessStoppedManually");
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(sj, "disruptions"),
                                                "restartApprovalMode"), ==, "Manual");
  g_assert_cmpint(json_object_get_int_member(sj, "terminationGracePeriodSeconds"), ==, 60);
}

static char *spec_with_user_data(gsize n)
{
  g_autofree char *ud = g_malloc(n + 1);
  memset(ud, 'x', n);
  ud[n] = '\0';
  return g_strdup_printf("{" HEADER "\"metadata\": {\"name\": \"a\"}, \"spec\": {"
                         "\"virtualMachineClassName\": \"host\", \"cpu\": {\"cores\": 1}, "
                         "\"memory\": {\"size\": \"1Gi\"}, \"blockDeviceRefs\": "
                         "[{\"kind\": \"VirtualDisk\", \"name\": \"d\"}], \"provisioning\": "
                         "{\"type\": \"UserData\", \"userData\": \"%s\"}}}", ud);
}

static void test_user_data_limit(void)
{
  g_autofree char *ok_text = spec_with_user_data(2048);
  g_autoptr(VmletDiag) d1 = NULL;
  g_autoptr(VmSpec) ok = parse(ok_text, &d1);
  g_assert_nonnull(ok);
  g_assert_cmpuint(strlen(ok->user_data), ==, 2048);

  g_autofree char *bad_text = spec_with_user_data(2049);
  g_autoptr(VmletDiag) d2 = NULL;
  g_autoptr(VmSpec) bad = parse(bad_text, &d2);
  g_assert_null(bad);
  g_assert_cmpuint(d2->errors->len, ==, 1);
  g_assert_cmpstr(d2->errors->pdata[0], ==,
                  "spec.provisioning.userData: expected at most 2048 bytes, found 2049");
}

/* Every core count in 1..248 is accepted exactly when DVP's topology can hold it. */
static void test_core_counts(void)
{
  for (guint cores = 1; cores <= 250; cores++) {
    g_autofree char *text = g_strdup_printf(
        "{" HEADER "\"metadata\": {\"name\": \"a\"}, \"spec\": {\"virtualMachineClassName\": "
        "\"host\", \"cpu\": {\"cores\": %u}, \"memory\": {\"size\": \"1Gi\"}, "
        "\"blockDeviceRefs\": [{\"kind\": \"VirtualDisk\", \"name\": \"d\"}]}}", cores);
    g_autoptr(VmletDiag) d = NULL;
    g_autoptr(VmSpec) vm = parse(text, &d);
    guint step = cores <= 16 ? 1 : cores <= 32 ? 2 : cores <= 64 ? 4 : 8;
    gboolean expect_ok = cores <= 248 && cores % step == 0;
    if (expect_ok != (vm != NULL))
      g_error("cores=%u: expected %s", cores, expect_ok ? "accepted" : "rejected");
  }
}

static GHashTable *labels(const char *first, ...)
{
  GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  va_list ap;
  va_start(ap, first);
  for (const char *k = first; k; k = va_arg(ap, const char *))
    g_hash_table_insert(t, g_strdup(k), g_strdup(va_arg(ap, const char *)));
  va_end(ap);
  return t;
}

static void test_node_matching(void)
{
  g_autoptr(VmletDiag) d = NULL;
  g_autoptr(VmSpec) vm = parse(
      "{" HEADER "\"metadata\": {\"name\": \"a\"}, \"spec\": {\"virtualMachineClassName\": "
      "\"host\", \"cpu\": {\"cores\": 1}, \"memory\": {\"size\": \"1Gi\"}, \"blockDeviceRefs\": "
      "[{\"kind\": \"VirtualDisk\", \"name\": \"d\"}], \"nodeSelector\": {\"disktype\": \"ssd\"}, "
      "\"affinity\": {\"nodeAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": "
      "{\"nodeSelectorTerms\": [{\"matchExpressions\": [{\"key\": \"zone\", \"operator\": "
      "\"In\", \"values\": [\"a\", \"b\"]}, {\"key\": \"cpus\", \"operator\": \"Gt\", "
      "\"values\": [\"8\"]}]}, {\"matchExpressions\": [{\"key\": \"lab\", \"operator\": "
      "\"Exists\"}]}]}}}}}", &d);
  g_assert_nonnull(vm);
  g_autoptr(GHashTable) good = labels("disktype", "ssd", "zone", "b", "cpus", "16", NULL);
  g_autoptr(GHashTable) lab = labels("disktype", "ssd", "lab", "", NULL);
  g_autoptr(GHashTable) few_cpus = labels("disktype", "ssd", "zone", "a", "cpus", "8", NULL);
  g_autoptr(GHashTable) hdd = labels("disktype", "hdd", "zone", "a", "cpus", "16", NULL);
  g_autofree char *why = NULL;
  g_assert_true(vm_spec_matches_node(vm, good, NULL));
  g_assert_true(vm_spec_matches_node(vm, lab, NULL));
  g_assert_false(vm_spec_matches_node(vm, few_cpus, &why));
  g_assert_cmpstr(why, ==, "spec.affinity.nodeAffinity: no required nodeSelectorTerm matches "
                           "this node's labels");
  g_clear_pointer(&why, g_free);
  g_assert_false(vm_spec_matches_node(vm, hdd, &why));
  g_assert_cmpstr(why, ==, "spec.nodeSelector: node has disktype=hdd, the VM needs disktype=ssd");
}

static void test_kubectl_output(void)
{
  g_autoptr(VmletDiag) d = NULL;
  g_autoptr(VmSpec) vm = parse(
      "{" HEADER "\"metadata\": {\"name\": \"a\", \"namespace\": \"prod\", \"uid\": "
      "\"3f7c1f7e-2b9e-4a57-9d8a-0c1d2e3f4a5b\", \"resourceVersion\": \"1\", "
      "\"creationTimestamp\": \"2024-01-01T00:00:00Z\", \"generation\": 3, \"finalizers\": [], "
      "\"labels\": {\"app\": \"db\"}}, \"spec\": {\"virtualMachineClassName\": \"host\", "
      "\"cpu\": {\"cores\": 1}, \"memory\": {\"size\": \"1Gi\"}, \"blockDeviceRefs\": "
      "[{\"kind\": \"VirtualDisk\", \"name\": \"d\"}]}, \"status\": {\"phase\": \"Running\"}}",
      &d);
  g_assert_nonnull(vm);
  g_assert_cmpuint(d->warnings->len, ==, 0);
  g_assert_cmpstr(vm->meta.namespace, ==, "prod");
  g_assert_cmpstr(vm->meta.uid, ==, "3f7c1f7e-2b9e-4a57-9d8a-0c1d2e3f4a5b");
  g_assert_cmpstr(g_hash_table_lookup(vm->meta.labels, "app"), ==, "db");
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/vmspec/defaults", test_defaults);
  g_test_add_func("/vmspec/user-data-limit", test_user_data_limit);
  g_test_add_func("/vmspec/core-counts", test_core_counts);
  g_test_add_func("/vmspec/node-matching", test_node_matching);
  g_test_add_func("/vmspec/kubectl-output", test_kubectl_output);
  return g_test_run();
}
