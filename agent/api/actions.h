/* The API's writes as plain calls: the manager and plain data (namespace, name, the bytes
 * a client sent) in, a result or a GError out, and no HTTP in them, so that a later peer
 * API (HTTPS between nodes, for migration) runs exactly the same writes. Each error carries
 * the VMLET_ERROR code that says what the caller got wrong or what stood in the way
 * (INVALID, MALFORMED, NOT_FOUND, CONFLICT, IO); errors.c turns it into an answer.
 *
 * VMs and attachments are written as drop-ins, atomically, in the directories the manager
 * reads: <config-dir>/vms.d and attachments.d, [NS.]NAME.json. */
#pragma once

#include <gio/gio.h>

#include "manager.h"

/* Apply (kubectl apply): body must be exactly one VirtualMachine named ns/name that loads
 * as a drop-in; it replaces the VM's drop-in (an existing VM keeps its file, a List file is
 * refused). Returns the VM as it now is. */
JsonNode *vmlet_action_apply_vm(VmletManager *mgr, const char *ns, const char *name,
                                GBytes *body, GError **error);
/* RFC 7386 merge patch of the VM's own drop-in, validated as a drop-in before it is
 * written: an invalid result changes nothing. Returns the VM as it now is. */
JsonNode *vmlet_action_patch_vm(VmletManager *mgr, const char *ns, const char *name,
                                GBytes *patch, GError **error);
/* Removes the drop-in the API writes for ns/name: the VM terminates. */
gboolean vmlet_action_delete_vm(VmletManager *mgr, const char *ns, const char *name,
                                GError **error);
/* KubeVirt's pause (TRUE) / unpause subresources: QMP stop / cont, finished once QEMU has
 * answered (a VM that is not Running: CONFLICT; QEMU's refusal: IO). */
void vmlet_action_pause_vm(VmletManager *mgr, const char *ns, const char *name, gboolean pause,
                           GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_action_pause_vm_finish(GAsyncResult *result, GError **error);
/* A VirtualMachineOperation {metadata: {name | generateName}, spec: {virtualMachineName,
 * type, force, migrate: {nodeSelector}}} in ns (actions-operation.c). Created even when the
 * run policy or the VM's state refuses it (then Failed with the reason, as in DVP). Without
 * a name the VM names it "<type>-<vm>-<uid>"; a name in use is EXISTS. Returns the
 * operation. */
JsonNode *vmlet_action_create_operation(VmletManager *mgr, const char *ns, GBytes *body,
                                        GError **error);

/* Create (or confirm) a VirtualMachineBlockDeviceAttachment: validated like a drop-in and
 * refused up front (CONFLICT with the reason) when it cannot be honoured. The attach starts
 * at once, while the drop-in is written and fsynced in a worker thread: callback, on the
 * caller's main context, waits for the file; QEMU does not. */
void vmlet_action_create_attachment(VmletManager *mgr, const char *ns, const char *name,
                                    GBytes *body, GAsyncReadyCallback callback,
                                    gpointer user_data);
/* The attachment as it now is; created: FALSE when the same one existed already. */
JsonNode *vmlet_action_create_attachment_finish(GAsyncResult *result, gboolean *created,
                                                GError **error);
/* Detach: removes the drop-in; the attachment stays Terminating until QEMU has let go. */
gboolean vmlet_action_delete_attachment(VmletManager *mgr, const char *ns, const char *name,
                                        GError **error);

/* Deletes an operation; one of a migration under way cancels it (DVP). */
gboolean vmlet_action_delete_operation(VmletManager *mgr, const char *ns, const char *name,
                                       GError **error);
