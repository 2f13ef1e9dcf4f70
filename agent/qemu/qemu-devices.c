#include "qemu-devices.h"

char *qdev_node_name(const VmPlanDisk *disk, const char *suffix)
{
  return g_strdup_printf("%s-%s", disk->node_prefix, suffix);
}

char *qdev_to_string(JsonObject *obj)
{
  g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);
  json_node_set_object(node, obj);
  return json_to_string(node, FALSE);
}

JsonObject *qdev_blockdev_storage(const VmPlanDisk *disk)
{
  JsonObject *o = json_object_new();
  g_autofree char *node = qdev_node_name(disk, "file");
  json_object_set_string_member(o, "driver", disk->host_device ? "host_device" : "file");
  json_object_set_string_member(o, "filename", disk->path);
  json_object_set_string_member(o, "node-name", node);
  /* auto-read-only lets QEMU open read-only images without write permission, and reopen
   * read-write only where the format node needs it (libvirt does the same). */
  json_object_set_boolean_member(o, "auto-read-only", TRUE);
  json_object_set_string_member(o, "discard", "unmap");
  return o;
}

JsonObject *qdev_blockdev_format(const VmPlanDisk *disk)
{
  JsonObject *o = json_object_new();
  g_autofree char *node = qdev_node_name(disk, "fmt");
  g_autofree char *file = qdev_node_name(disk, "file");
  json_object_set_string_member(o, "node-name", node);
  json_object_set_boolean_member(o, "read-only", disk->read_only);
  json_object_set_string_member(o, "driver",
                                disk->format == VMLET_FORMAT_QCOW2 ? "qcow2" : "raw");
  json_object_set_string_member(o, "file", file);
  return o;
}

JsonObject *qdev_disk_device(const VmPlanDisk *disk, const char *bus)
{
  JsonObject *o = json_object_new();
  g_autofree char *node = qdev_node_name(disk, "fmt");
  const char *driver = NULL;
  switch (disk->bus) {
  case VM_DISK_BUS_VIRTIO:
    driver = "virtio-blk-pci";
    break;
  case VM_DISK_BUS_SATA:
    driver = disk->cdrom ? "ide-cd" : "ide-hd";
    break;
  case VM_DISK_BUS_SCSI:
    driver = "scsi-cd";
    break;
  }
  json_object_set_string_member(o, "driver", driver);
  json_object_set_string_member(o, "bus", bus);
  if (disk->bus == VM_DISK_BUS_VIRTIO)
    json_object_set_string_member(o, "addr", "0x0");
  if (disk->bus == VM_DISK_BUS_SCSI) {
    json_object_set_int_member(o, "scsi-id", disk->slot);
    json_object_set_int_member(o, "lun", 0);
  }
  json_object_set_string_member(o, "drive", node);
  json_object_set_string_member(o, "id", disk->device_id);
  /* The serial shows up in the guest as /dev/disk/by-id/virtio-<serial>; virtio-blk keeps
   * at most 20 bytes of it. */
  if (disk->bus == VM_DISK_BUS_VIRTIO) {
    g_autofree char *serial = g_strndup(disk->name, 20);
    json_object_set_string_member(o, "serial", serial);
  }
  if (disk->boot_index)
    json_object_set_int_member(o, "bootindex", disk->boot_index);
  return o;
}

JsonObject *qdev_root_port(guint index, gboolean multifunction)
{
  JsonObject *o = json_object_new();
  g_autofree char *id = g_strdup_printf("pci.%u", index);
  /* Eight functions per slot from slot 2 on, as libvirt lays them out. */
  guint slot = 2 + (index - 1) / 8, fn = (index - 1) % 8;
  g_autofree char *addr = fn ? g_strdup_printf("0x%x.0x%x", slot, fn) : g_strdup_printf("0x%x", slot);
  json_object_set_string_member(o, "driver", "pcie-root-port");
  json_object_set_int_member(o, "port", 0x10 + index - 1);
  json_object_set_int_member(o, "chassis", index);
  json_object_set_string_member(o, "id", id);
  json_object_set_string_member(o, "bus", "pcie.0");
  if (multifunction)
    json_object_set_boolean_member(o, "multifunction", TRUE);
  json_object_set_string_member(o, "addr", addr);
  /* Devices behind these ports are PCIe-native (virtio 1.0, xhci) and need no I/O ports;
   * reserving none keeps 20 ports inside the 64 KiB I/O space SeaBIOS can hand out. */
  json_object_set_int_member(o, "io-reserve", 0);
  return o;
}
