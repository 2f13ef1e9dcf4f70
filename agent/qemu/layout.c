/* Where each device of a VM sits. Decided here, once, for the argv builder to print and for
 * hotplug to know which root ports are spare: libvirt's qemuDomainAssignAddresses, kept to
 * what q35 needs. A migration destination must lay the VM out exactly as its source did,
 * which the same plan gives it. */
#include "plan.h"

void vm_plan_layout(VmPlan *plan)
{
  guint port = 1, sata = 0;
  for (guint i = 0; i < plan->disks->len; i++) {
    VmPlanDisk *d = plan->disks->pdata[i];
    switch (d->bus) {
    case VM_DISK_BUS_VIRTIO:
      d->slot = port++;
      break;
    case VM_DISK_BUS_SATA:
      d->slot = sata++;
      break;
    case VM_DISK_BUS_SCSI:
      d->slot = 0;
      break;
    }
  }
  plan->scsi_port = port++;
  plan->serial_port = port++;
  plan->usb_port = port++;
  plan->balloon_port = port++;
  guint refs = plan->spec->block_devices->len;
  plan->hotplug_ports = refs < VM_MAX_BLOCK_DEVICES ? VM_MAX_BLOCK_DEVICES - refs : 0;
  plan->first_hotplug_port = port;
  plan->root_ports = port - 1 + plan->hotplug_ports;
}

char *vm_plan_disk_bus(const VmPlanDisk *disk)
{
  switch (disk->bus) {
  case VM_DISK_BUS_VIRTIO:
    return g_strdup_printf("pci.%u", disk->slot);
  case VM_DISK_BUS_SCSI:
    return g_strdup("scsi0.0");
  case VM_DISK_BUS_SATA:
    break;
  }
  return g_strdup_printf("ide.%u", disk->slot);
}
