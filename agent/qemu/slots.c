#include "slots.h"

#include <string.h>

#include "vmlet-error.h"

gint vmlet_slot_lowest(guint64 candidates, guint64 taken)
{
  guint64 free = candidates & ~taken;
  if (!free)
    return -1;
  return __builtin_ctzll(free);
}

/* "pci.N" with 1 <= N < 64, the ids qemu-devices.c gives root ports. */
static gint port_index(const char *qdev_id)
{
  if (!qdev_id || !g_str_has_prefix(qdev_id, "pci."))
    return -1;
  guint64 n = 0;
  if (!g_ascii_string_to_unsigned(qdev_id + 4, 10, 1, 63, &n, NULL))
    return -1;
  return (gint)n;
}

gint vmlet_slots_port_of_bus(const char *parent_bus)
{
  /* A root port's secondary bus is named like the port: /machine/peripheral/pci.N/pci.N. */
  const char *prefix = "/machine/peripheral/";
  if (!parent_bus || !g_str_has_prefix(parent_bus, prefix))
    return -1;
  g_auto(GStrv) parts = g_strsplit(parent_bus + strlen(prefix), "/", 3);
  if (g_strv_length(parts) != 2 || !g_str_equal(parts[0], parts[1]))
    return -1;
  return port_index(parts[0]);
}

guint64 vmlet_slots_free_ports(GHashTable *types, GHashTable *parent_buses)
{
  guint64 ports = 0, used = 0;
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, types);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    gint n = port_index(k);
    if (n >= 0 && g_strcmp0(v, "child<pcie-root-port>") == 0)
      ports |= G_GUINT64_CONSTANT(1) << n;
  }
  g_hash_table_iter_init(&it, parent_buses);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    gint n = vmlet_slots_port_of_bus(v);
    if (n >= 0)
      used |= G_GUINT64_CONSTANT(1) << n;
  }
  return ports & ~used;
}

VmbdaProblem *vmlet_slots_check(const VmSpec *spec, GPtrArray *others,
                                const VmletAttachment *att)
{
  const char *kind = vm_block_kind_name(att->kind);
  guint refs = spec ? spec->block_devices->len : 0;
  for (guint i = 0; i < refs; i++) {
    const VmBlockDeviceRef *ref = spec->block_devices->pdata[i];
    if (ref->kind == att->kind && g_str_equal(ref->name, att->block_name))
      return vmbda_problem_new(VMBDA_REASON_CONFLICT,
                               "%s \"%s\" is already attached to VirtualMachine \"%s\" by its "
                               "spec.blockDeviceRefs[%u]",
                               kind, att->block_name, att->vm_name, i);
  }
  for (guint i = 0; others && i < others->len; i++) {
    const VmletAttachment *o = others->pdata[i];
    if (o->kind == att->kind && g_str_equal(o->block_name, att->block_name))
      return vmbda_problem_new(VMBDA_REASON_CONFLICT,
                               "%s \"%s\" is already attached to VirtualMachine \"%s\" by "
                               "VirtualMachineBlockDeviceAttachment \"%s\"",
                               kind, att->block_name, att->vm_name, o->meta.name);
  }
  guint attached = others ? others->len : 0;
  if (refs + attached + 1 > VM_MAX_BLOCK_DEVICES)
    return vmbda_problem_new(VMBDA_REASON_CAPACITY_REACHED,
                             "VirtualMachine \"%s\" already has %u block devices (%u in "
                             "spec.blockDeviceRefs, %u attached); the limit is %d",
                             att->vm_name, refs + attached, refs, attached,
                             VM_MAX_BLOCK_DEVICES);
  return NULL;
}

void vmlet_slots_place(VmPlan *plan, GPtrArray *attachments, VmletInventory *inv,
                       const VmletNode *node, GHashTable *keep, GHashTable *left_out)
{
  const VmSpec *spec = plan->spec;
  guint64 ports = vm_plan_spare_ports(plan), taken_ports = 0, taken_ids = 0;
  g_autoptr(GPtrArray) placed = g_ptr_array_new();
  g_autoptr(GPtrArray) disks = g_ptr_array_new_with_free_func((GDestroyNotify)vm_plan_disk_free);
  /* Slots an attachment had before are honoured first, so a restart keeps the guest's view
   * of each device; the rest take the lowest free slot. */
  for (guint pass = 0; pass < 2; pass++) {
    for (guint i = 0; i < attachments->len; i++) {
      VmletAttachment *att = attachments->pdata[i];
      if (!g_str_equal(att->meta.namespace, spec->meta.namespace) ||
          !g_str_equal(att->vm_name, spec->meta.name) ||
          g_hash_table_contains(left_out, att->meta.name))
        continue;
      gpointer kept = keep ? g_hash_table_lookup(keep, att->meta.name) : NULL;
      gboolean already = FALSE;
      for (guint j = 0; j < placed->len && !already; j++)
        already = placed->pdata[j] == att;
      if (already || (pass == 0 && !kept))
        continue;
      VmletBlockObject *obj = vmlet_inventory_block(inv, att->kind, att->meta.namespace,
                                                    att->block_name);
      if (!obj) {
        g_hash_table_replace(
            left_out, g_strdup(att->meta.name),
            att->kind == VM_BLOCK_CLUSTER_VIRTUAL_IMAGE
                ? vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY,
                                    "ClusterVirtualImage \"%s\" not found", att->block_name)
                : vmbda_problem_new(VMBDA_REASON_BLOCK_NOT_READY,
                                    "%s \"%s\" not found in namespace \"%s\"",
                                    vm_block_kind_name(att->kind), att->block_name,
                                    att->meta.namespace));
        continue;
      }
      VmbdaProblem *problem = vmlet_slots_check(spec, placed, att);
      if (problem) {
        g_hash_table_replace(left_out, g_strdup(att->meta.name), problem);
        continue;
      }
      g_autoptr(VmPlanDisk) disk = vm_plan_attachment_disk(node, obj, att->meta.name);
      gboolean scsi = disk->bus == VM_DISK_BUS_SCSI;
      guint64 candidates = scsi ? VMLET_SCSI_IDS : ports;
      guint64 *taken = scsi ? &taken_ids : &taken_ports;
      gint slot = -1;
      if (kept) {
        guint want = GPOINTER_TO_UINT(kept) - 1;
        if (want < 64 && (candidates & ~*taken & (G_GUINT64_CONSTANT(1) << want)))
          slot = (gint)want;
      }
      if (slot < 0)
        slot = vmlet_slot_lowest(candidates, *taken);
      if (slot < 0) {
        g_hash_table_replace(left_out, g_strdup(att->meta.name),
                             vmbda_problem_new(VMBDA_REASON_CAPACITY_REACHED,
                                               "no free %s for %s \"%s\"",
                                               scsi ? "SCSI id on scsi0" : "hotplug port",
                                               vm_block_kind_name(att->kind), att->block_name));
        continue;
      }
      *taken |= G_GUINT64_CONSTANT(1) << slot;
      disk->slot = (guint)slot;
      g_ptr_array_add(placed, att);
      g_ptr_array_add(disks, g_steal_pointer(&disk));
    }
  }
  /* In attachment order, whatever the pass that placed them, so the argv is stable. */
  for (guint i = 0; i < attachments->len; i++)
    for (guint j = 0; j < placed->len; j++)
      if (placed->pdata[j] == attachments->pdata[i])
        g_ptr_array_add(plan->hotplugged, g_steal_pointer(&disks->pdata[j]));
}
