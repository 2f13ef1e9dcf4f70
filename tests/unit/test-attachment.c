/* VirtualMachineBlockDeviceAttachment parsing and output (attachment.c), and where
 * attachments' disks go (slots.c): the pure parts of hotplug. */
#include <string.h>

#include "attachment.h"
#include "hotplug.h"
#include "objects.h"
#include "plan.h"
#include "slots.h"

static VmletAttachment *parse(const char *text, GError **error)
{
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("a.json", text, strlen(text), NULL, error);
  if (!objs)
    return NULL;
  g_assert_cmpuint(objs->len, ==, 1);
  VmletObject *o = objs->pdata[0];
  g_assert_cmpint(o->kind, ==, VMLET_KIND_VMBDA);
  return vmlet_attachment_ref(o->attachment);
}

static const char *seed =
    "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": "
    "\"VirtualMachineBlockDeviceAttachment\", \"metadata\": {\"name\": \"attach-blank-disk\", "
    "\"creationTimestamp\": \"2024-05-06T07:08:09Z\"}, \"spec\": {\"blockDeviceRef\": "
    "{\"kind\": \"VirtualDisk\", \"name\": \"blank-disk\"}, \"virtualMachineName\": "
    "\"linux-vm\"}, \"status\": {\"phase\": \"Attached\"}}";

static void test_parse_seed(void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletAttachment) a = parse(seed, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(a->meta.name, ==, "attach-blank-disk");
  g_assert_cmpstr(a->meta.namespace, ==, "default");
  g_assert_cmpstr(a->vm_name, ==, "linux-vm");
  g_assert_cmpint(a->kind, ==, VM_BLOCK_VIRTUAL_DISK);
  g_assert_cmpstr(a->block_name, ==, "blank-disk");
  g_assert_cmpint(a->created_us, ==, G_GINT64_CONSTANT(1714979289) * G_USEC_PER_SEC);

  g_autoptr(VmletAttachment) same =
      vmlet_attachment_new("default", "other-name", "linux-vm", VM_BLOCK_VIRTUAL_DISK, "blank-disk");
  g_assert_true(vmlet_attachment_same_spec(a, same));
  g_autoptr(VmletAttachment) image =
      vmlet_attachment_new("default", "x", "linux-vm", VM_BLOCK_VIRTUAL_IMAGE, "blank-disk");
  g_assert_false(vmlet_attachment_same_spec(a, image));
}

static void test_parse_errors(void)
{
  g_autoptr(GError) error = NULL;
  const char *bad =
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1\", \"kind\": "
      "\"VirtualMachineBlockDeviceAttachment\", \"metadata\": {\"name\": \"x\"}, \"spec\": "
      "{\"virtualMachineName\": \"Linux\", \"blockDeviceRef\": {\"kind\": \"Disk\", \"name\": "
      "\"\"}, \"bootOrder\": 1}}";
  g_autoptr(VmletAttachment) a = parse(bad, &error);
  g_assert_null(a);
  g_assert_cmpstr(error->message, ==,
                  "a.json: apiVersion: expected one of virtualization.deckhouse.io/v1alpha2, "
                  "found \"virtualization.deckhouse.io/v1\"\n"
                  "a.json: spec.virtualMachineName: expected a DNS-1123 label (1-63 characters "
                  "of a-z, 0-9 and '-', starting and ending with a letter or digit), found "
                  "\"Linux\"\n"
                  "a.json: spec.blockDeviceRef.kind: expected one of VirtualDisk, VirtualImage, "
                  "ClusterVirtualImage, found \"Disk\"\n"
                  "a.json: spec.blockDeviceRef.name: expected a DNS-1123 label (1-63 characters "
                  "of a-z, 0-9 and '-', starting and ending with a letter or digit), found \"\"");

  /* Unknown fields are warnings, so a typo is seen but kubectl output still loads. */
  g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
  const char *typo =
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": "
      "\"VirtualMachineBlockDeviceAttachment\", \"metadata\": {\"name\": \"x\"}, \"spec\": "
      "{\"virtualMachineName\": \"vm\", \"blockDeviceRef\": {\"kind\": \"VirtualImage\", "
      "\"name\": \"iso\", \"nmae\": 1}}}";
  g_autoptr(GError) e2 = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("b.json", typo, strlen(typo), warnings, &e2);
  g_assert_no_error(e2);
  g_assert_cmpuint(objs->len, ==, 1);
  g_assert_cmpuint(warnings->len, ==, 1);
  g_assert_true(strstr(warnings->pdata[0], "spec.blockDeviceRef.nmae"));
}

static const char *condition_reason(JsonNode *n, const char *type)
{
  JsonArray *conds = json_object_get_array_member(
      json_object_get_object_member(json_node_get_object(n), "status"), "conditions");
  for (guint i = 0; i < json_array_get_length(conds); i++) {
    JsonObject *c = json_array_get_object_element(conds, i);
    if (g_str_equal(json_object_get_string_member(c, "type"), type))
      return json_object_get_string_member(c, "reason");
  }
  return NULL;
}

static void test_status_json(void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletAttachment) a = parse(seed, &error);
  VmbdaStatus st = {.phase = VMBDA_PHASE_ATTACHED, .target = "vd-blank-disk"};
  g_autoptr(JsonNode) n = vmlet_attachment_to_json(a, &st);
  JsonObject *o = json_node_get_object(n);
  JsonObject *status = json_object_get_object_member(o, "status");
  g_assert_cmpstr(json_object_get_string_member(status, "phase"), ==, "Attached");
  g_assert_cmpstr(json_object_get_string_member(status, "virtualMachineName"), ==, "linux-vm");
  g_assert_cmpstr(condition_reason(n, "Attached"), ==, "Attached");
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(o, "metadata"),
                                                "creationTimestamp"),
                  ==, "2024-05-06T07:08:09Z");

  /* Each cause shows as DVP's condition for it, and the Attached condition says why. */
  struct {
    VmbdaReason reason;
    VmbdaPhase phase;
    const char *type, *why, *attached;
  } cases[] = {
      {VMBDA_REASON_VM_NOT_READY, VMBDA_PHASE_PENDING, "VirtualMachineReady",
       "VirtualMachineNotReady", "NotAttached"},
      {VMBDA_REASON_BLOCK_NOT_READY, VMBDA_PHASE_PENDING, "BlockDeviceReady",
       "BlockDeviceNotReady", "NotAttached"},
      {VMBDA_REASON_CAPACITY_REACHED, VMBDA_PHASE_FAILED, "DiskAttachmentCapacityAvailableType",
       "CapacityReached", "NotAttached"},
      {VMBDA_REASON_CONFLICT, VMBDA_PHASE_FAILED, NULL, NULL, "Conflict"},
      {VMBDA_REASON_HOTPLUG_FAILED, VMBDA_PHASE_FAILED, NULL, NULL, "HotplugFailed"},
      {VMBDA_REASON_DETACH_PENDING, VMBDA_PHASE_TERMINATING, NULL, NULL, "DetachPending"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(VmbdaProblem) p = vmbda_problem_new(cases[i].reason, "why %zu", i);
    g_assert_cmpint(vmbda_problem_phase(p), ==, cases[i].phase);
    VmbdaStatus s = {.phase = vmbda_problem_phase(p), .reason = p->reason, .message = p->message};
    g_autoptr(JsonNode) j = vmlet_attachment_to_json(a, &s);
    if (cases[i].type)
      g_assert_cmpstr(condition_reason(j, cases[i].type), ==, cases[i].why);
    g_assert_cmpstr(condition_reason(j, "Attached"), ==, cases[i].attached);
  }
}

static void test_lowest_slot(void)
{
  g_assert_cmpint(vmlet_slot_lowest(0, 0), ==, -1);
  g_assert_cmpint(vmlet_slot_lowest(0xf0, 0), ==, 4);
  g_assert_cmpint(vmlet_slot_lowest(0xf0, 0x30), ==, 6);
  g_assert_cmpint(vmlet_slot_lowest(0xf0, 0xf0), ==, -1);
  g_assert_cmpint(vmlet_slot_lowest(VMLET_SCSI_IDS, 0x7fff), ==, 15);
  g_assert_cmpint(vmlet_slot_lowest(VMLET_SCSI_IDS, 0xffff), ==, -1);
}

static void test_free_ports(void)
{
  g_assert_cmpint(vmlet_slots_port_of_bus("/machine/peripheral/pci.7/pci.7"), ==, 7);
  g_assert_cmpint(vmlet_slots_port_of_bus("/machine/peripheral/pci.12/pci.12"), ==, 12);
  g_assert_cmpint(vmlet_slots_port_of_bus("/machine/peripheral/pci.7/pci.8"), ==, -1);
  g_assert_cmpint(vmlet_slots_port_of_bus("/machine/peripheral/scsi0/virtio-backend/scsi0.0"),
                  ==, -1);
  g_assert_cmpint(vmlet_slots_port_of_bus("/machine/q35/pcie.0"), ==, -1);
  g_assert_cmpint(vmlet_slots_port_of_bus("/machine/peripheral/pci.64/pci.64"), ==, -1);
  g_assert_cmpint(vmlet_slots_port_of_bus(NULL), ==, -1);

  g_autoptr(GHashTable) types = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GHashTable) parents = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 1; i <= 6; i++)
    g_hash_table_insert(types, g_strdup_printf("pci.%u", i), "child<pcie-root-port>");
  g_hash_table_insert(types, g_strdup("vd-root"), "child<virtio-blk-pci>");
  g_hash_table_insert(types, g_strdup("scsi0"), "child<virtio-scsi-pci>");
  g_hash_table_insert(types, g_strdup("vi-iso"), "child<scsi-cd>");
  g_hash_table_insert(types, g_strdup("type"), "string");
  g_hash_table_insert(parents, "vd-root", "/machine/peripheral/pci.1/pci.1");
  g_hash_table_insert(parents, "scsi0", "/machine/peripheral/pci.2/pci.2");
  g_hash_table_insert(parents, "vi-iso", "/machine/peripheral/scsi0/virtio-backend/scsi0.0");
  g_hash_table_insert(parents, "hot", "/machine/peripheral/pci.5/pci.5");
  /* pci.3, pci.4 and pci.6 are free. */
  g_assert_cmphex(vmlet_slots_free_ports(types, parents), ==, (1 << 3) | (1 << 4) | (1 << 6));
}

/* ---- checks and placement against a spec ---- */

static const char *klass = "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": "
                           "\"VirtualMachineClass\", \"metadata\": {\"name\": \"host\"}, "
                           "\"spec\": {\"cpu\": {\"type\": \"Host\"}}}";

static void add_doc(VmletInventory *inv, const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("fixture", text, strlen(text), NULL, &error);
  g_assert_no_error(error);
  for (guint i = 0; i < objs->len; i++)
    vmlet_inventory_add(inv, objs->pdata[i]);
}

static void add_block(VmletInventory *inv, const char *kind, const char *name, const char *format)
{
  g_autofree char *text = g_strdup_printf(
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"%s\", "
      "\"metadata\": {\"name\": \"%s\"}, \"spec\": {\"local\": {\"format\": \"%s\"}}}",
      kind, name, format);
  add_doc(inv, text);
}

static VmSpec *spec_with_refs(guint n)
{
  GString *refs = g_string_new(NULL);
  for (guint i = 0; i < n; i++)
    g_string_append_printf(refs, "%s{\"kind\": \"VirtualDisk\", \"name\": \"d%02u\"}", i ? ", " : "",
                           i + 1);
  g_autofree char *text = g_strdup_printf(
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualMachine\", "
      "\"metadata\": {\"name\": \"vm\"}, \"spec\": {\"virtualMachineClassName\": \"host\", "
      "\"cpu\": {\"cores\": 1}, \"memory\": {\"size\": \"1Gi\"}, \"blockDeviceRefs\": [%s]}}",
      refs->str);
  g_string_free(refs, TRUE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("vm.json", text, strlen(text), NULL, &error);
  g_assert_no_error(error);
  return vm_spec_ref(((VmletObject *)objs->pdata[0])->vm);
}

static void test_check(void)
{
  g_autoptr(VmSpec) spec = spec_with_refs(15);
  g_autoptr(GPtrArray) others = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_attachment_unref);
  g_autoptr(VmletAttachment) in_refs =
      vmlet_attachment_new("default", "a", "vm", VM_BLOCK_VIRTUAL_DISK, "d03");
  g_autoptr(VmbdaProblem) p1 = vmlet_slots_check(spec, others, in_refs);
  g_assert_cmpint(p1->reason, ==, VMBDA_REASON_CONFLICT);
  g_assert_cmpstr(p1->message, ==, "VirtualDisk \"d03\" is already attached to VirtualMachine "
                                   "\"vm\" by its spec.blockDeviceRefs[2]");
  /* The same name as a VirtualImage is another device. */
  g_autoptr(VmletAttachment) image =
      vmlet_attachment_new("default", "b", "vm", VM_BLOCK_VIRTUAL_IMAGE, "d03");
  g_assert_null(vmlet_slots_check(spec, others, image));
  g_ptr_array_add(others, vmlet_attachment_ref(image));
  g_autoptr(VmletAttachment) twice =
      vmlet_attachment_new("default", "c", "vm", VM_BLOCK_VIRTUAL_IMAGE, "d03");
  g_autoptr(VmbdaProblem) p2 = vmlet_slots_check(spec, others, twice);
  g_assert_cmpstr(p2->message, ==, "VirtualImage \"d03\" is already attached to VirtualMachine "
                                   "\"vm\" by VirtualMachineBlockDeviceAttachment \"b\"");
  /* 15 refs + 1 attached: the 17th device is refused. */
  g_autoptr(VmletAttachment) extra =
      vmlet_attachment_new("default", "d", "vm", VM_BLOCK_VIRTUAL_DISK, "spare");
  g_autoptr(VmbdaProblem) p3 = vmlet_slots_check(spec, others, extra);
  g_assert_cmpint(p3->reason, ==, VMBDA_REASON_CAPACITY_REACHED);
  g_assert_cmpint(vmbda_problem_phase(p3), ==, VMBDA_PHASE_FAILED);
  g_assert_cmpstr(p3->message, ==, "VirtualMachine \"vm\" already has 16 block devices (15 in "
                                   "spec.blockDeviceRefs, 1 attached); the limit is 16");
  /* A VM without a valid spec has no refs to count. */
  g_assert_null(vmlet_slots_check(NULL, NULL, extra));
}

static void test_place(void)
{
  g_autoptr(VmletInventory) inv = vmlet_inventory_new();
  add_doc(inv, klass);
  for (guint i = 1; i <= 14; i++) {
    g_autofree char *name = g_strdup_printf("d%02u", i);
    add_block(inv, "VirtualDisk", name, "qcow2");
  }
  add_block(inv, "VirtualDisk", "blank", "qcow2");
  add_block(inv, "VirtualDisk", "data", "raw");
  add_block(inv, "VirtualImage", "tools", "iso");
  add_block(inv, "ClusterVirtualImage", "base", "qcow2");
  g_autoptr(VmSpec) spec = spec_with_refs(12);
  g_autoptr(VmletNode) node = vmlet_node_new_default();
  node->accel = VMLET_ACCEL_TCG;
  g_autoptr(VmletDiag) d = vmlet_diag_new("vm.json");
  g_autoptr(VmPlan) plan = vm_plan_build(spec, inv, node, d);
  g_assert_nonnull(plan);
  /* 12 virtio refs on pci.1-12, 4 controllers on pci.13-16, 4 spare ports pci.17-20. */
  g_assert_cmpuint(plan->first_hotplug_port, ==, 17);
  g_assert_cmphex(vm_plan_spare_ports(plan), ==, 0xfULL << 17);

  g_autoptr(GPtrArray) atts = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_attachment_unref);
  const struct {
    const char *name;
    VmBlockKind kind;
    const char *block;
  } want[] = {
      {"a-blank", VM_BLOCK_VIRTUAL_DISK, "blank"},   {"b-data", VM_BLOCK_VIRTUAL_DISK, "data"},
      {"c-tools", VM_BLOCK_VIRTUAL_IMAGE, "tools"},  {"d-ref", VM_BLOCK_VIRTUAL_DISK, "d01"},
      {"e-missing", VM_BLOCK_VIRTUAL_DISK, "gone"},  {"f-base", VM_BLOCK_CLUSTER_VIRTUAL_IMAGE, "base"},
      {"g-too-many", VM_BLOCK_VIRTUAL_DISK, "d13"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(want); i++)
    g_ptr_array_add(atts, vmlet_attachment_new("default", want[i].name, "vm", want[i].kind,
                                               want[i].block));
  g_ptr_array_add(atts, vmlet_attachment_new("default", "other-vm", "vm2", VM_BLOCK_VIRTUAL_DISK,
                                             "d14"));
  /* b-data had pci.19 before the restart: it keeps it; the others take the lowest free. */
  g_autoptr(GHashTable) keep = g_hash_table_new(g_str_hash, g_str_equal);
  g_hash_table_insert(keep, "b-data", GUINT_TO_POINTER(19 + 1));
  g_autoptr(GHashTable) left = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                     (GDestroyNotify)vmbda_problem_free);
  vmlet_slots_place(plan, atts, inv, node, keep, left);

  g_assert_cmpuint(plan->hotplugged->len, ==, 4);
  const struct {
    const char *id;
    VmDiskBus bus;
    guint slot;
    gboolean ro;
    const char *bus_name;
  } got[] = {
      {"vd-blank", VM_DISK_BUS_VIRTIO, 17, FALSE, "pci.17"},
      {"vd-data", VM_DISK_BUS_VIRTIO, 19, FALSE, "pci.19"},
      {"vi-tools", VM_DISK_BUS_SCSI, 0, TRUE, "scsi0.0"},
      {"cvi-base", VM_DISK_BUS_VIRTIO, 18, TRUE, "pci.18"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(got); i++) {
    const VmPlanDisk *disk = plan->hotplugged->pdata[i];
    g_assert_cmpstr(disk->device_id, ==, got[i].id);
    g_assert_cmpint(disk->bus, ==, got[i].bus);
    g_assert_cmpuint(disk->slot, ==, got[i].slot);
    g_assert_cmpint(disk->read_only, ==, got[i].ro);
    g_assert_cmpuint(disk->boot_index, ==, 0);
    g_autofree char *bus = vm_plan_disk_bus(disk);
    g_assert_cmpstr(bus, ==, got[i].bus_name);
  }
  g_assert_cmpuint(g_hash_table_size(left), ==, 3);
  VmbdaProblem *ref = g_hash_table_lookup(left, "d-ref");
  g_assert_cmpint(ref->reason, ==, VMBDA_REASON_CONFLICT);
  VmbdaProblem *missing = g_hash_table_lookup(left, "e-missing");
  g_assert_cmpint(missing->reason, ==, VMBDA_REASON_BLOCK_NOT_READY);
  g_assert_cmpstr(missing->message, ==, "VirtualDisk \"gone\" not found in namespace \"default\"");
  /* 12 refs + 4 placed = 16: the fifth one is over the limit. */
  VmbdaProblem *over = g_hash_table_lookup(left, "g-too-many");
  g_assert_cmpint(over->reason, ==, VMBDA_REASON_CAPACITY_REACHED);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/attachment/parse-seed", test_parse_seed);
  g_test_add_func("/attachment/parse-errors", test_parse_errors);
  g_test_add_func("/attachment/status-json", test_status_json);
  g_test_add_func("/slots/lowest", test_lowest_slot);
  g_test_add_func("/slots/free-ports", test_free_ports);
  g_test_add_func("/slots/check", test_check);
  g_test_add_func("/slots/place", test_place);
  return g_test_run();
}
