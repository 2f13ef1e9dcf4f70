/* One VM's VirtualMachineBlockDeviceAttachments: the desired ones (from drop-ins, handed in
 * by the manager) against the devices QEMU has, driven to agree over the VM's QMP
 * connection with the sequences of hotplug.c.
 *
 * The controller is level-triggered like the VM itself: every change (a drop-in, the VM's
 * phase, a QMP reply or event) leads to one reconcile, which starts what is missing
 * (attach) and ends what is no longer wanted (detach). Per device:
 *
 *   (none) --blockdev-add+device_add--> ATTACHING --ok--> ATTACHED
 *            ATTACHED --device_del--> DETACHING --DEVICE_DELETED--> RELEASING
 *            RELEASING --blockdev-del--> (none)
 *
 * QEMU is the authority on what is plugged: when the controller takes over a QEMU (a start,
 * or a re-adopted one after vmletd restarted) it first reads QEMU's devices, nodes and free
 * root ports, and squares its record with them, so nothing is plugged twice and nothing
 * left half-done stays. What the controller knows is persisted in the VM's record through
 * the "changed" signal (ATTACHING devices are not: QEMU is asked again instead).
 *
 * A VM start brings every ready attachment back in its argv (vmlet_attach_ctl_plan), on the
 * slot it had, never in the boot order. */
#pragma once

#include <glib-object.h>
#include <json-glib/json-glib.h>

#include "attachment.h"
#include "node.h"
#include "objects.h"
#include "confine.h"
#include "plan.h"
#include "monitor.h"
#include "vmspec.h"

/* How long the guest gets to release a device after device_del before the attachment says
 * it is still waiting (it keeps waiting: the event may come much later, e.g. after a
 * paused VM is resumed). ACPI hotplug takes about 0.1 s here, native PCIe hotplug 6.3 s. */
#define VMLET_DETACH_WAIT_S 10
/* Retry interval for a failed device_del or blockdev-del, and for an attachment waiting
 * for its disk file to appear. */
#define VMLET_ATTACH_RECHECK_MS 1000

#define VMLET_TYPE_ATTACH_CTL (vmlet_attach_ctl_get_type())
G_DECLARE_FINAL_TYPE(VmletAttachCtl, vmlet_attach_ctl, VMLET, ATTACH_CTL, GObject)

/* Signal "changed": an attachment's status or the set of devices changed. The owner
 * persists vmlet_attach_ctl_record() before passing the change on. */

/* node and inv are borrowed for the controller's lifetime (*inv is re-read at every use:
 * the manager replaces the inventory on reload). */
VmletAttachCtl *vmlet_attach_ctl_new(const char *namespace, const char *vm_name,
                                     const VmletNode *node, VmletInventory **inv);

/* The VM's spec (NULL when invalid) and, when it is not running, why (shown as the
 * Pending reason: "VirtualMachine \"x\" is Stopped"); NULL while it runs. */
void vmlet_attach_ctl_set_vm(VmletAttachCtl *ctl, VmSpec *spec, const char *not_running);
void vmlet_attach_ctl_set_paused(VmletAttachCtl *ctl, gboolean paused);
/* QEMU's confinement: a disk or image is given to its user before QEMU opens it. NULL:
 * QEMU keeps the agent's user. Not owned; outlives ctl (the manager's). */
void vmlet_attach_ctl_set_confine(VmletAttachCtl *ctl, const VmletConfine *confine);

/* The attachments that name this VM (VmletAttachment *, sorted), and the problems the
 * manager found with them across VMs (name -> VmbdaProblem *, may be NULL). retry: also
 * try again the ones QEMU refused before (a drop-in changed). */
void vmlet_attach_ctl_set_desired(VmletAttachCtl *ctl, GPtrArray *attachments,
                                  GHashTable *conflicts, gboolean retry);

/* At a start: puts the ready attachments' disks into plan->hotplugged. */
void vmlet_attach_ctl_plan(VmletAttachCtl *ctl, VmPlan *plan);
/* QEMU was spawned from plan: its hot-plugged disks are being plugged (checked once QMP is
 * up). */
void vmlet_attach_ctl_started(VmletAttachCtl *ctl, const VmPlan *plan);
/* QMP is up and the VM runs (fresh or re-adopted): read QEMU's state, then reconcile. */
void vmlet_attach_ctl_activate(VmletAttachCtl *ctl, VmletMonitor *mon);
/* QEMU is gone: every device went with it. */
void vmlet_attach_ctl_deactivate(VmletAttachCtl *ctl);

/* The devices as the VM's record keeps them (a JSON array), and back (at adoption). A
 * damaged record entry is an error naming it; the good ones are still taken. */
JsonNode *vmlet_attach_ctl_record(VmletAttachCtl *ctl);
gboolean vmlet_attach_ctl_load(VmletAttachCtl *ctl, JsonNode *record, GError **error);

/* The status of attachment name; FALSE when the controller knows nothing of it. Strings in
 * *out are borrowed until the next change. */
gboolean vmlet_attach_ctl_status(VmletAttachCtl *ctl, const char *name, VmbdaStatus *out);
/* Attachments still being detached although their object is gone (VmletAttachment *). */
GPtrArray *vmlet_attach_ctl_terminating(VmletAttachCtl *ctl);
/* Whether a device is plugged or being plugged for attachment name (it then holds its
 * disk against other VMs). */
gboolean vmlet_attach_ctl_holds(VmletAttachCtl *ctl, const char *name);
/* status.blockDeviceRefs items of the hot-plugged devices. */
void vmlet_attach_ctl_block_refs(VmletAttachCtl *ctl, JsonArray *into);
