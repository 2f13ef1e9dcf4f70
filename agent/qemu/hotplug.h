/* The QMP side of hotplug, one device at a time: what to send, in which order, and how
 * to undo it. State (which device is where, what is waiting) belongs to the caller
 * (attachctl.c); every function here is one GTask over the VM's QMP connection.
 *
 * Facts these sequences rest on (measured here with QEMU 7.2, q35 and ACPI PCI hotplug):
 * - blockdev-add then device_add; QEMU runs commands in the order they arrive, so the three
 *   are sent back to back and a failed step makes the later ones fail too.
 * - device_del only asks the guest (ACPI hotplug on a root port); the device is gone when
 *   DEVICE_DELETED arrives, about 0.1 s later, or never while the VM is paused (it then
 *   arrives after cont). scsi-cd on virtio-scsi needs no guest: the event comes at once.
 * - QEMU sends two DEVICE_DELETED for a virtio device: first for .../virtio-backend without
 *   a "device" member, then the device's own. Only data.device counts (monitor.h passes
 *   NULL as the device of the first).
 * - blockdev-del of a node a device still uses fails ("Node ... is in use"), so it is only
 *   sent after the device is gone. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "plan.h"
#include "monitor.h"

/* blockdev-add (storage node), blockdev-add (format node; read-only for images), then
 * device_add, with the properties qemu-devices.c builds for the same disk at boot. When any
 * step fails, the nodes that were added are deleted again (device_add is last, so no
 * device is ever left behind) and the error carries QEMU's message. */
void vmlet_hotplug_attach_async(VmletMonitor *mon, const VmPlanDisk *disk,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
gboolean vmlet_hotplug_attach_finish(GAsyncResult *result, GError **error);

/* device_del. TRUE when QEMU accepted the request, or when the device is already gone
 * (*gone is then TRUE and no DEVICE_DELETED will come). */
void vmlet_hotplug_unplug_async(VmletMonitor *mon, const char *device_id,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
gboolean vmlet_hotplug_unplug_finish(GAsyncResult *result, gboolean *gone, GError **error);

/* blockdev-del of the format node, then of the storage node. A node that is already gone
 * is not an error. Call only once the device is gone. */
void vmlet_hotplug_release_async(VmletMonitor *mon, const VmPlanDisk *disk,
                                 GCancellable *cancellable, GAsyncReadyCallback callback,
                                 gpointer user_data);
gboolean vmlet_hotplug_release_finish(GAsyncResult *result, GError **error);

/* What a running QEMU has, read once when vmletd takes over its QMP connection. */
typedef struct {
  guint64 free_ports;  /* bit N: root port pci.N with no device on it */
  GHashTable *devices; /* qdev id -> QOM type, e.g. "child<virtio-blk-pci>" */
  GHashTable *nodes;   /* block node names (query-named-block-nodes, flat) */
} VmletHotplugProbe;

void vmlet_hotplug_probe_free(VmletHotplugProbe *probe);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletHotplugProbe, vmlet_hotplug_probe_free)

void vmlet_hotplug_probe_async(VmletMonitor *mon, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
VmletHotplugProbe *vmlet_hotplug_probe_finish(GAsyncResult *result, GError **error);

/* Where a plugged device sits, read from QOM: its root port index (virtio, from
 * parent_bus "/machine/peripheral/pci.N/pci.N") or its SCSI id (scsi-cd). For a device
 * QEMU has but vmletd's record lacks (vmletd died between device_add and its save). */
void vmlet_hotplug_locate_async(VmletMonitor *mon, const VmPlanDisk *disk,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
gboolean vmlet_hotplug_locate_finish(GAsyncResult *result, guint *slot, GError **error);
