/* Fuzz target: any bytes through the drop-in parser, and for each VirtualMachine found, the
 * planner and the argv builder, against a fixed node. It must never crash, hang or leak. */
#include <stdint.h>
#include <string.h>

#include "fileio.h"
#include "objects.h"
#include "qemu-argv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixture[] =
    "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": ["
    "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualMachineClass\","
    " \"metadata\": {\"name\": \"generic\"}, \"spec\": {\"cpu\": {\"type\": \"Model\", \"model\":"
    " \"Nehalem\"}, \"sizingPolicies\": [{\"cores\": {\"min\": 1, \"max\": 4}, \"coreFractions\":"
    " [5, 10, 20, 50, 100], \"memory\": {\"min\": \"1Gi\", \"max\": \"8Gi\", \"step\": \"512Mi\"}}]}},"
    "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualMachineClass\","
    " \"metadata\": {\"name\": \"host\"}, \"spec\": {\"cpu\": {\"type\": \"Host\"}}},"
    "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualDisk\","
    " \"metadata\": {\"name\": \"linux-vm-root\"}},"
    "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"ClusterVirtualImage\","
    " \"metadata\": {\"name\": \"ubuntu-iso\"}, \"spec\": {\"local\": {\"format\": \"iso\"}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static VmletInventory *inv;
  static VmletNode *node;
  if (!inv) {
    inv = vmlet_inventory_new();
    g_autoptr(GPtrArray) objs = vmlet_objects_parse("fixture", fixture, sizeof(fixture) - 1, NULL, NULL);
    g_assert_nonnull(objs);
    for (guint i = 0; i < objs->len; i++)
      vmlet_inventory_add(inv, objs->pdata[i]);
    node = vmlet_node_new_default();
    node->accel = VMLET_ACCEL_TCG;
  }
  if (size > VMLET_MAX_DROPIN_BYTES)
    return 0;
  g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs =
      vmlet_objects_parse("fuzz.json", (const char *)data, size, warnings, &error);
  if (!objs) {
    g_assert_nonnull(error);
    g_assert_true(error->message && *error->message);
    return 0;
  }
  for (guint i = 0; i < objs->len; i++) {
    VmletObject *o = objs->pdata[i];
    if (o->kind != VMLET_KIND_VIRTUAL_MACHINE)
      continue;
    g_autoptr(VmletDiag) d = vmlet_diag_new("fuzz.json");
    g_autoptr(VmPlan) plan = vm_plan_build(o->vm, inv, node, d);
    if (plan) {
      g_auto(GStrv) argv = vm_qemu_argv(plan);
      g_assert_nonnull(argv[0]);
    } else {
      g_assert_true(vmlet_diag_has_errors(d));
    }
  }
  return 0;
}
