/* The node's VMs: drop-in directories in, VMs reconciled, status out.
 *
 * One GMainLoop drives everything. The manager reads <config-dir>/vms.d (and the classes,
 * disks and images the VMs refer to), watches those directories, and on every change
 * re-reads them and reconciles each VM. A drop-in that fails to load makes only its own VM
 * Pending. At start-up every record in <state-dir>/vms is adopted before anything is
 * started, so a restarted agent never starts a VM that is already running. */
#pragma once

#include <glib-object.h>

#include "node.h"
#include "vm.h"

#define VMLET_TYPE_MANAGER (vmlet_manager_get_type())
G_DECLARE_FINAL_TYPE(VmletManager, vmlet_manager, VMLET, MANAGER, GObject)

/* Signals: "vm-changed" (VmletVm *vm), "vm-removed" (const char *namespace, const char *name),
 * "vm-note" (VmletVm *vm, int syslog priority, const char *text: for the log),
 * "attachment-changed" (JsonNode *attachment: a VirtualMachineBlockDeviceAttachment whose
 * JSON differs from what was last announced), "attachment-removed" (namespace, name),
 * "node-changed" (the cordon or the drain changed), "node-note" (int syslog priority,
 * const char *text: a drain's step, for the log). */

/* Takes ownership of node. */
VmletManager *vmlet_manager_new(VmletNode *node);
/* Adopts records, loads drop-ins, starts watching, reconciles. */
void vmlet_manager_start(VmletManager *mgr);
/* Re-reads the drop-in directories now (the file monitors call this, debounced). */
void vmlet_manager_reload(VmletManager *mgr);

VmletVm *vmlet_manager_lookup(VmletManager *mgr, const char *namespace, const char *name);
/* VMs sorted by namespace and name; the array holds references. */
GPtrArray *vmlet_manager_list(VmletManager *mgr);
const VmletNode *vmlet_manager_get_node(VmletManager *mgr);
/* The VirtualMachineOperations of namespace ns: those of VMs gone from this node (the
 * newest 64: an Evict's result stays readable on its source), then the VMs'. */
JsonArray *vmlet_manager_operations(VmletManager *mgr, const char *ns);
/* One of them (a copy), or NULL. */
JsonNode *vmlet_manager_operation(VmletManager *mgr, const char *ns, const char *name);
/* Deletes one (a migration it asked for is cancelled); FALSE when there is none. */
gboolean vmlet_manager_delete_operation(VmletManager *mgr, const char *ns, const char *name);
/* Problems with drop-ins that could not be attributed to a VM (e.g. a broken disk). */
GPtrArray *vmlet_manager_problems(VmletManager *mgr);
/* VirtualMachineBlockDeviceAttachments (JsonNode *, DVP-shaped with status) in namespace ns
 * (NULL: all), sorted; those still being detached after their drop-in went are included. */
GPtrArray *vmlet_manager_attachments(VmletManager *mgr, const char *ns);
/* One of them, or NULL. */
JsonNode *vmlet_manager_attachment(VmletManager *mgr, const char *ns, const char *name);
/* The drop-in file an attachment comes from, or NULL. */
const char *vmlet_manager_attachment_source(VmletManager *mgr, const char *ns, const char *name);
/* Adds att (from the drop-in source, being written) to the node at once, without
 * re-reading every drop-in: its attach starts now. The next reload reads it from disk. */
void vmlet_manager_add_attachment(VmletManager *mgr, VmletAttachment *att, const char *source);
/* Its drop-in is on disk (ok), or could not be written: then it is forgotten again. */
void vmlet_manager_attachment_written(VmletManager *mgr, const char *ns, const char *name,
                                      gboolean ok);
/* Why att cannot be created now (its spec differs from an existing one of the same name, a
 * read-write disk held by another VM, the device already in the VM, the 16-device limit),
 * or NULL when it can. */
VmbdaProblem *vmlet_manager_check_attachment(VmletManager *mgr, const VmletAttachment *att);

/* Migration (manager-migrate.c): NULL when migration is off. */
typedef struct _VmletMigrations VmletMigrations;
VmletMigrations *vmlet_manager_migrations(VmletManager *mgr);
/* Why migration is off although [migration] asks for it (bad certificates), or NULL. */
const char *vmlet_manager_migrations_problem(VmletManager *mgr);
/* This node for a peer choosing a target: name, labels, cordoned, in/out slots. */
JsonNode *vmlet_manager_node_summary(VmletManager *mgr);
/* A peer's prepare request: answered with the ports, or a VMLET_MIG_ERROR. */
void vmlet_manager_migration_prepare(VmletManager *mgr, JsonObject *request, const char *peer,
                                     const char *peer_dn, GAsyncReadyCallback callback,
                                     gpointer user_data);
JsonNode *vmlet_manager_migration_prepare_finish(VmletManager *mgr, GAsyncResult *result,
                                                 GError **error);
JsonNode *vmlet_manager_migration_describe(VmletManager *mgr, const char *id, const char *peer,
                                           GError **error);
void vmlet_manager_migration_commit(VmletManager *mgr, const char *id, const char *peer,
                                    guint64 generation, GAsyncReadyCallback callback,
                                    gpointer user_data);
JsonNode *vmlet_manager_migration_commit_finish(VmletManager *mgr, GAsyncResult *result,
                                                GError **error);
gboolean vmlet_manager_migration_abort(VmletManager *mgr, const char *id, const char *peer,
                                       const char *why, GError **error);

/* Maintenance (manager-drain.c). A cordoned node starts no VM and takes no migration. */
gboolean vmlet_manager_is_cordoned(VmletManager *mgr);
/* Cordons the node (persisted before it returns) and drains it: an Evict per VM running
 * here; with force, the VMs no peer can take are stopped gracefully instead (their specs
 * kept). Again while cordoned: retries those the last drain could not move. FALSE when
 * the cordon could not be written (nothing changed then). */
gboolean vmlet_manager_drain(VmletManager *mgr, gboolean force, GError **error);
/* Ends maintenance: evictions not yet at their switchover are cancelled, the cordon file
 * is removed, VMs start again as their run policies want. */
gboolean vmlet_manager_uncordon(VmletManager *mgr, GError **error);
/* The node (manager-node.c): name, labels, SchedulingDisabled, the drain's VMs and
 * progress. */
JsonNode *vmlet_manager_node_json(VmletManager *mgr);
/* What a drain would do now, without doing it: per VM, evicted (with the peers whose
 * labels fit its placement) or left as it is, and why. */
JsonNode *vmlet_manager_drain_plan(VmletManager *mgr);

/* Counts per phase for the systemd STATUS= line: "3 VMs: 2 Running, 1 Stopped", after
 * "draining: 2 of 5 VMs left; " while a drain runs. */
char *vmlet_manager_summary(VmletManager *mgr);
