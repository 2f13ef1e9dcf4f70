/* QEMU device and block-node properties, built once as JSON objects.
 *
 * The same object is serialised into `-device {json}` / `-blockdev {json}` at start and sent
 * as QMP device_add / blockdev-add arguments at hotplug, so a hot-plugged disk is exactly the
 * disk a restart would create (docs/CONVENTIONS.md, libvirt's qemuBuild*Props). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "plan.h"

/* Storage node: "file" or "host_device" over the path. */
JsonObject *qdev_blockdev_storage(const VmPlanDisk *disk);
/* Format node ("qcow2" or "raw") over the storage node. */
JsonObject *qdev_blockdev_format(const VmPlanDisk *disk);
/* The guest-visible device. bus is "pci.N" (virtio), "ide.N" (SATA) or "scsi0.0" (scsi-cd,
 * at SCSI id disk->slot). */
JsonObject *qdev_disk_device(const VmPlanDisk *disk, const char *bus);
/* A pcie-root-port on pcie.0 numbered index >= 1; id "pci.<index>". */
JsonObject *qdev_root_port(guint index, gboolean multifunction);

char *qdev_node_name(const VmPlanDisk *disk, const char *suffix);
/* Compact JSON text for a command line argument or a QMP message. */
char *qdev_to_string(JsonObject *obj);
