#include <string.h>

#include "jsonval.h"
#include "plan.h"
#include "qemu-devices.h"

static VmletInventory *inventory_with(const char *class_json, const char *disk_json)
{
  VmletInventory *inv = vmlet_inventory_new();
  const char *docs[] = {class_json, disk_json};
  for (gsize i = 0; i < G_N_ELEMENTS(docs); i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) objs = vmlet_objects_parse("fixture", docs[i], strlen(docs[i]), NULL, &error);
    g_assert_no_error(error);
    for (guint j = 0; j < objs->len; j++)
      vmlet_inventory_add(inv, objs->pdata[j]);
  }
  return inv;
}

static const char *host_class = "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", "
                                "\"kind\": \"VirtualMachineClass\", \"metadata\": {\"name\": "
                                "\"host\"}, \"spec\": {\"cpu\": {\"type\": \"Host\"}}}";

static VmPlan *plan_for(const char *ns, const char *name, const char *uid, VmletDiag **d_out)
{
  g_autofree char *disk = g_strdup_printf(
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualDisk\", "
      "\"metadata\": {\"name\": \"%s\", \"namespace\": \"%s\"}}", name, ns);
  g_autoptr(VmletInventory) inv = inventory_with(host_class, disk);
  g_autofree char *uid_member = uid ? g_strdup_printf(", \"uid\": \"%s\"", uid) : g_strdup("");
  g_autofree char *vm_text = g_strdup_printf(
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualMachine\", "
      "\"metadata\": {\"name\": \"%s\", \"namespace\": \"%s\"%s}, \"spec\": "
      "{\"virtualMachineClassName\": \"host\", \"cpu\": {\"cores\": 1}, \"memory\": {\"size\": "
      "\"1Gi\"}, \"blockDeviceRefs\": [{\"kind\": \"VirtualDisk\", \"name\": \"%s\"}]}}",
      name, ns, uid_member, name);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("vm.json", vm_text, strlen(vm_text), NULL, &error);
  g_assert_no_error(error);
  g_autoptr(VmletNode) node = vmlet_node_new_default();
  node->accel = VMLET_ACCEL_TCG;
  VmletDiag *d = vmlet_diag_new("vm.json");
  VmPlan *plan = vm_plan_build(((VmletObject *)objs->pdata[0])->vm, inv, node, d);
  *d_out = d;
  return plan;
}

static void test_long_names(void)
{
  /* 63-character namespace and name: sockets must still fit sockaddr_un, node names 31. */
  const char *ns = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";
  const char *name = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";
  g_autoptr(VmletDiag) d = NULL;
  g_autoptr(VmPlan) p = plan_for(ns, name, NULL, &d);
  g_assert_nonnull(p);
  g_assert_cmpuint(strlen(p->console_socket), <=, VMLET_UNIX_PATH_MAX);
  g_assert_cmpuint(strlen(p->qmp_socket), <=, VMLET_UNIX_PATH_MAX);
  const VmPlanDisk *disk = p->disks->pdata[0];
  g_autofree char *node_fmt = qdev_node_name(disk, "file");
  g_assert_cmpuint(strlen(node_fmt), <=, 31);

  /* Two VMs whose names share the first characters still get distinct directories. */
  g_autoptr(VmletNode) node = vmlet_node_new_default();
  g_autofree char *a = vm_plan_runtime_dir(node, ns, name);
  g_autofree char *b = vm_plan_runtime_dir(node, ns, "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvx");
  g_assert_cmpstr(a, !=, b);
  g_autofree char *s = vm_plan_runtime_dir(node, "default", "linux-vm");
  g_assert_cmpstr(s, ==, "/run/vmlet/vms/default.linux-vm");
}

static void test_uuid(void)
{
  g_autoptr(VmletDiag) d1 = NULL, d2 = NULL, d3 = NULL;
  g_autoptr(VmPlan) a = plan_for("default", "x", NULL, &d1);
  g_autoptr(VmPlan) b = plan_for("default", "x", NULL, &d2);
  g_autoptr(VmPlan) c = plan_for("default", "x", "3F7C1F7E-2B9E-4A57-9D8A-0C1D2E3F4A5B", &d3);
  g_assert_true(g_uuid_string_is_valid(a->uuid));
  g_assert_cmpstr(a->uuid, ==, b->uuid); /* stable across renders */
  g_assert_cmpint(a->uuid[14], ==, '5');
  g_assert_cmpstr(c->uuid, ==, "3f7c1f7e-2b9e-4a57-9d8a-0c1d2e3f4a5b");
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/plan/long-names", test_long_names);
  g_test_add_func("/plan/uuid", test_uuid);
  return g_test_run();
}
