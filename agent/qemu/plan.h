/* A VM plan: a spec resolved against its class, its disks and images, and the node.
 *
 * Everything the QEMU command line needs is decided here (paths, formats, buses, boot
 * order, topology, runtime socket paths), so the argv builder is a plain transcription and
 * the same decisions serve status output and, later, hotplug. Pure: no file system access. */
#pragma once

#include <glib.h>

#include "blockobj.h"
#include "diag.h"
#include "node.h"
#include "objects.h"
#include "vmclass.h"
#include "vmspec.h"

typedef enum {
  VM_DISK_BUS_VIRTIO, /* virtio-blk-pci on its own pcie-root-port */
  VM_DISK_BUS_SATA,   /* ide-hd / ide-cd on the q35 built-in AHCI (ide.0 - ide.5) */
  VM_DISK_BUS_SCSI,   /* scsi-cd on the virtio-scsi controller scsi0 (hot-plugged ISO images) */
} VmDiskBus;

typedef struct {
  char *device_id;   /* QEMU qdev id, e.g. "vd-linux-vm-root" */
  char *node_prefix; /* blockdev node names are <prefix>-file and <prefix>-fmt (<= 31) */
  gboolean is_ref;   /* from spec.blockDeviceRefs (else the provisioning ISO) */
  VmBlockKind kind;
  char *name;
  char *path;
  VmletImageFormat format;
  gboolean read_only;
  gboolean cdrom;
  gboolean host_device; /* a block device node under /dev */
  VmDiskBus bus;
  guint boot_index; /* 1-based position in blockDeviceRefs; 0 = not bootable */
  /* Disks of VirtualMachineBlockDeviceAttachments (hot-plugged, or brought back at a
   * start): the attachment's name. */
  char *attachment;
  /* Where the device sits: its root port pci.<slot> (virtio), its AHCI port ide.<slot>
   * (sata), its SCSI id on scsi0 (scsi-cd of an attachment). */
  guint slot;
} VmPlanDisk;

typedef struct {
  gint refcount;
  VmSpec *spec;
  VmClass *klass;
  VmletAccel accel; /* KVM or TCG, never AUTO */
  char *qemu_binary;
  char *machine;
  char *cpu;        /* the -cpu argument */
  guint sockets, cores_per_socket;
  guint64 memory_mib; /* spec memory rounded up to whole MiB */
  GPtrArray *disks;   /* VmPlanDisk *: refs in boot order, then the provisioning ISO */
  /* The device layout (vm_plan_layout): every PCIe device on a root port of its own, the
   * ports numbered pci.1 ... pci.<root_ports> in the order: the virtio disks of
   * blockDeviceRefs (their VmPlanDisk.slot), the controllers, then the spare ones. */
  guint root_ports;
  guint hotplug_ports; /* spare pcie-root-ports for later disk hotplug */
  guint first_hotplug_port; /* index of the first spare port: pci.<first_hotplug_port> */
  guint scsi_port, serial_port, usb_port, balloon_port;
  GPtrArray *hotplugged; /* VmPlanDisk *: attachments' disks, never bootable (attachctl.c) */
  char *uuid;
  char *runtime_dir;
  char *qmp_socket, *console_socket, *vnc_socket, *agent_socket;
  char *ovmf_code, *ovmf_vars; /* EFI only: firmware and this VM's own NVRAM copy */
  char *ovmf_vars_template;
  gboolean secure_boot;
  /* A migration destination's QEMU: started with -incoming defer (set by the runtime, never
   * from a spec). */
  gboolean incoming;
} VmPlan;

/* DVP's CPU topology: up to 16 cores in one socket, then 2, 4 or 8 equal sockets. */
void vm_plan_topology(guint cores, guint *sockets, guint *cores_per_socket);

/* The longest socket path Linux accepts in sockaddr_un, minus the NUL. */
#define VMLET_UNIX_PATH_MAX 107

/* Resolves spec against inv and node (node->accel must be resolved). On failure returns
 * NULL with errors in d at the spec paths concerned ("spec.blockDeviceRefs[0]: VirtualDisk
 * \"x\" not found ..."); a missing dependency is what later makes a VM Pending. */
VmPlan *vm_plan_build(VmSpec *spec, VmletInventory *inv, const VmletNode *node, VmletDiag *d);
VmPlan *vm_plan_ref(VmPlan *plan);
void vm_plan_unref(VmPlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmPlan, vm_plan_unref)

void vm_plan_disk_free(VmPlanDisk *disk);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmPlanDisk, vm_plan_disk_free)

/* QEMU's id for the device of a disk or image, the same for a blockDeviceRef and for an
 * attachment: "vd-<name>", "vi-<name>", "cvi-<name>". */
char *vm_plan_device_id(VmBlockKind kind, const char *name);

/* The disk an attachment plugs: path, format and read-only exactly as for a
 * blockDeviceRef of the same object, never bootable; virtio-blk on a spare root port, or
 * scsi-cd on scsi0 for ISO images (q35's AHCI cannot hot-plug). slot is left 0. */
VmPlanDisk *vm_plan_attachment_disk(const VmletNode *node, const VmletBlockObject *obj,
                                    const char *attachment);

/* Decides where every device of plan sits (the fields after root_ports); the argv builder
 * only prints it. Called by vm_plan_build. */
void vm_plan_layout(VmPlan *plan);

/* The bus a disk's device sits on: "pci.<slot>", "ide.<slot>" or "scsi0.0". */
char *vm_plan_disk_bus(const VmPlanDisk *disk);

/* Spare root ports as a bit mask (bit N: pci.N), the ports a hot-plugged virtio disk may
 * use in a QEMU started from this plan. */
guint64 vm_plan_spare_ports(const VmPlan *plan);

/* The per-VM runtime directory name: "<namespace>.<name>" (dots cannot occur in either,
 * so it is unambiguous), shortened with a hash when socket paths would not fit. */
char *vm_plan_runtime_dir(const VmletNode *node, const char *namespace, const char *name);
