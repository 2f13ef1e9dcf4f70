/* Where attachments' disks go, decided without touching QEMU: spare root ports for
 * virtio-blk, SCSI ids on scsi0 for CD-ROMs, and the checks that keep a VM within the
 * 16-device total of its spec. Pure functions; the QMP side is hotplug.c. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "attachment.h"
#include "objects.h"
#include "plan.h"

/* SCSI ids used on scsi0 (0 to 15): the 16-device total caps the CD-ROMs anyway. */
#define VMLET_SCSI_IDS G_GUINT64_CONSTANT(0xffff)

/* The lowest bit set in candidates and clear in taken, or -1 when there is none. */
gint vmlet_slot_lowest(guint64 candidates, guint64 taken);

/* The free root ports of a QEMU: bit N for every pcie-root-port "pci.N" that no device
 * sits on. types: qdev id -> QOM type as qom-list /machine/peripheral gives it
 * ("child<pcie-root-port>"); parent_buses: qdev id -> its parent_bus QOM path
 * ("/machine/peripheral/pci.3/pci.3"). (query-pci cannot say: before the firmware has
 * numbered the buses it shows nothing behind a bridge.) */
guint64 vmlet_slots_free_ports(GHashTable *types, GHashTable *parent_buses);

/* The root port index in a parent_bus path ("/machine/peripheral/pci.7/pci.7" -> 7), or
 * -1 for any other bus. */
gint vmlet_slots_port_of_bus(const char *parent_bus);

/* What keeps att (a VirtualMachineBlockDeviceAttachment of the VM whose spec is spec, NULL
 * when the VM has no valid spec) from joining it, given the attachments the VM already
 * has (VmletAttachment *, not att): NULL when nothing does. Checks that the device is not
 * in spec.blockDeviceRefs, not plugged by another attachment, and that the VM stays within
 * VM_MAX_BLOCK_DEVICES. */
VmbdaProblem *vmlet_slots_check(const VmSpec *spec, GPtrArray *others,
                                const VmletAttachment *att);

/* Puts the disks of attachments (VmletAttachment *, for plan's VM, in order) into
 * plan->hotplugged as a start brings them back: each on the spare port or SCSI id it
 * keeps (taken from keep: attachment name -> GUINT_TO_POINTER(slot + 1), may be NULL) when
 * that is still free, else the lowest free one. Attachments left out get their problem in
 * left_out (name -> VmbdaProblem *). File existence is the caller's business. */
void vmlet_slots_place(VmPlan *plan, GPtrArray *attachments, VmletInventory *inv,
                       const VmletNode *node, GHashTable *keep, GHashTable *left_out);
