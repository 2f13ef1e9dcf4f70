/* VirtualMachineBlockDeviceAttachment (vmbda): a disk or image hot-plugged into a running
 * VM, as DVP defines it (api/core/v1alpha2/virtual_machine_block_device_attachment.go):
 * spec.virtualMachineName and spec.blockDeviceRef {kind, name}; status.phase Pending,
 * InProgress, Attached, Failed or Terminating, with conditions saying why.
 *
 * This file is the object model only: parsing with diagnostics, and the DVP-shaped output
 * of a status someone else computed (attachctl.c for a VM's attachments, manager.c for
 * those whose VM does not exist). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"
#include "meta.h"
#include "vmspec.h"

#define VMLET_KIND_NAME_VMBDA "VirtualMachineBlockDeviceAttachment"

typedef struct {
  gint refcount;
  VmletMeta meta;
  char *vm_name;     /* spec.virtualMachineName */
  VmBlockKind kind;  /* spec.blockDeviceRef.kind */
  char *block_name;  /* spec.blockDeviceRef.name */
  gint64 created_us; /* metadata.creationTimestamp (kubectl output); 0 when absent */
} VmletAttachment;

typedef enum {
  VMBDA_PHASE_PENDING,     /* the VM or the block device is not ready */
  VMBDA_PHASE_IN_PROGRESS, /* blockdev-add / device_add under way */
  VMBDA_PHASE_ATTACHED,
  VMBDA_PHASE_FAILED,      /* a conflict, the limit, or QEMU refused: the reason says */
  VMBDA_PHASE_TERMINATING, /* deleted: device_del sent, waiting for the guest */
} VmbdaPhase;

/* Why an attachment is in its phase: DVP's condition reasons (vmbdacondition), so tools
 * written for DVP read them. */
typedef enum {
  VMBDA_REASON_NONE,
  VMBDA_REASON_VM_NOT_READY,        /* VirtualMachineReady: VirtualMachineNotReady */
  VMBDA_REASON_BLOCK_NOT_READY,     /* BlockDeviceReady: BlockDeviceNotReady */
  VMBDA_REASON_CONFLICT,            /* Attached: Conflict */
  VMBDA_REASON_CAPACITY_REACHED,    /* DiskAttachmentCapacityAvailableType: CapacityReached */
  VMBDA_REASON_HOTPLUG_FAILED,      /* Attached: HotplugFailed (QEMU's error, rolled back) */
  VMBDA_REASON_REQUEST_SENT,        /* Attached: AttachmentRequestSent */
  VMBDA_REASON_DETACH_PENDING,      /* Attached: DetachPending (device_del sent) */
} VmbdaReason;

typedef struct {
  VmbdaPhase phase;
  VmbdaReason reason;
  const char *message;   /* NULL when there is nothing to say */
  const char *target;    /* QEMU device id once plugged, else NULL */
  gint64 created_us;     /* for metadata.creationTimestamp when the object has none */
} VmbdaStatus;

/* Why an attachment cannot go ahead (a conflict, the limit, a missing disk). */
typedef struct {
  VmbdaReason reason;
  char *message;
} VmbdaProblem;

VmbdaProblem *vmbda_problem_new(VmbdaReason reason, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void vmbda_problem_free(VmbdaProblem *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmbdaProblem, vmbda_problem_free)
/* The phase a problem leaves an attachment in: Pending while waiting can help (the VM or
 * the disk is not ready), Failed when the user must act (conflict, limit, QEMU refused). */
VmbdaPhase vmbda_problem_phase(const VmbdaProblem *p);

VmletAttachment *vmlet_attachment_parse(JsonObject *root, VmletDiag *d);
VmletAttachment *vmlet_attachment_ref(VmletAttachment *att);
void vmlet_attachment_unref(VmletAttachment *att);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletAttachment, vmlet_attachment_unref)

/* A new attachment with no metadata beyond namespace and name (for records and the CLI). */
VmletAttachment *vmlet_attachment_new(const char *namespace, const char *name,
                                      const char *vm_name, VmBlockKind kind,
                                      const char *block_name);

/* Same VM and same block device (the spec, which DVP makes immutable). */
gboolean vmlet_attachment_same_spec(const VmletAttachment *a, const VmletAttachment *b);

const char *vmbda_phase_name(VmbdaPhase phase);

/* The object in DVP's shape: apiVersion, kind, metadata, spec, status. */
JsonNode *vmlet_attachment_to_json(const VmletAttachment *att, const VmbdaStatus *status);

/* A drop-in that does not load, listed under its file name as Failed with its problems. */
JsonNode *vmlet_attachment_refused_json(const char *namespace, const char *name,
                                        const char *problems);

/* The document `vmlet attach` sends (no status). */
JsonNode *vmlet_attachment_manifest(const VmletAttachment *att);
