/* One VM on this node: the desired spec, its QEMU process, its phase.
 *
 * Phases are DVP's: Pending (cannot start: invalid spec, a missing dependency), Starting,
 * Running, Stopping, Stopped, Terminating (drop-in removed). The run policy decides what
 * happens when QEMU exits or the guest powers off; operations (Start, Stop, Restart) are
 * checked against it. Every change is persisted in the VM's record before it is reported,
 * and a restarted agent re-adopts the running QEMU from that record. */
#pragma once

#include <glib-object.h>
#include <json-glib/json-glib.h>

#include "attachctl.h"
#include "node.h"
#include "objects.h"
#include "vmrecord.h"
#include "vmspec.h"

typedef enum {
  VM_PHASE_PENDING,
  VM_PHASE_STARTING,
  VM_PHASE_RUNNING,
  VM_PHASE_STOPPING,
  VM_PHASE_STOPPED,
  VM_PHASE_TERMINATING,
  VM_PHASE_MIGRATING,
} VmPhase;

typedef enum {
  VM_OP_START,
  VM_OP_STOP,
  VM_OP_RESTART,
  VM_OP_EVICT,   /* live-migrate to any suitable peer */
  VM_OP_MIGRATE, /* live-migrate to a peer matching migrate.nodeSelector */
} VmOpType;

/* What every VM of a node shares; owned by the manager, outlives its VMs. */
typedef struct _VmletCgroups VmletCgroups;
typedef struct _VmletConfine VmletConfine;
typedef struct _VmletMigrations VmletMigrations;

typedef struct {
  VmletNode *node;
  VmletInventory *inv;
  VmletCgroups *cgroups;  /* NULL when the backend could not be set up: */
  char *cgroups_problem;  /* ... then why, and every VM stays Pending with it */
  VmletConfine *confine;  /* made at the first start (the user may be created later) */
  /* Set by the manager while it reloads: a record of a VM without a QEMU is then written
   * without fsync (sync_pending set), and the manager syncs the state dir's file system
   * once at the end. Such a record can be derived from the drop-ins again; a record with a
   * pid is always synced before the change is reported. */
  gboolean defer_sync;
  gboolean sync_pending;
  VmletMigrations *migrations; /* NULL: migration is not enabled on this node */
  char *migrations_problem;    /* ... and when it should be, why not */
  /* The node is in maintenance (manager-drain.c): no VM starts here; a VM that wants to
   * run is Pending with the reason NodeCordoned, Start and Restart are refused. */
  gboolean cordoned;
} VmletVmEnv;

#define VMLET_TYPE_VM (vmlet_vm_get_type())
G_DECLARE_FINAL_TYPE(VmletVm, vmlet_vm, VMLET, VM, GObject)

/* Signals: "changed" (phase, conditions or operations changed), "gone" (a Terminating VM
 * has stopped and its record is deleted: drop it), "note" (int syslog priority, const char
 * *text: something for the log, e.g. a migration's end). */

VmletVm *vmlet_vm_new(const char *namespace, const char *name, VmletVmEnv *env);
const char *vmlet_vm_get_namespace(VmletVm *vm);
const char *vmlet_vm_get_name(VmletVm *vm);
VmPhase vmlet_vm_get_phase(VmletVm *vm);
/* The desired spec, or NULL while the drop-in is unusable. */
VmSpec *vmlet_vm_get_spec(VmletVm *vm);
/* The drop-in file the VM comes from (NULL for a VM known only from its record). */
const char *vmlet_vm_get_source(VmletVm *vm);
const char *vm_phase_name(VmPhase phase);

/* The desired spec from the drop-in, or NULL with the problem that makes it unusable (the
 * VM then stays Pending with that reason; a running QEMU is left alone). */
void vmlet_vm_set_spec(VmletVm *vm, VmSpec *spec, const char *source, const char *problem);

/* Warnings about the desired spec (char *: "file: path: text"): unknown fields, rounded
 * values, a #cloud-config that is not valid YAML. Shown as status.warnings; they never keep
 * a VM from running. */
void vmlet_vm_set_warnings(VmletVm *vm, GPtrArray *warnings);

/* Takes over a record found at start-up: re-adopts its QEMU if it still runs. Call before
 * the first reconcile, so a running VM is never started twice. */
void vmlet_vm_adopt(VmletVm *vm, VmletVmRecord *record);

/* The VM must not run here (why; reason for its Ready condition): its record could not be
 * read (a QEMU may run it), or it was migrated away and its drop-in could not be put
 * aside. It is never started, and its record never written or removed. */
void vmlet_vm_hold(VmletVm *vm, const char *reason, const char *why);

/* Acts on the difference between the desired and the actual state. */
void vmlet_vm_reconcile(VmletVm *vm);

/* Records an operation (VirtualMachineOperation) and starts acting on it; returns its uid.
 * One that the run policy or the VM's state refuses is recorded in phase Failed with the
 * reason (vmlet_vm_operations_json) and changes nothing else. */
char *vmlet_vm_operate(VmletVm *vm, VmOpType type, gboolean force);
/* An Evict or a Migrate: selector (for Migrate; may be NULL) narrows the target peers by
 * their labels, kubernetes.io/hostname naming the node. Recorded like any operation. */
char *vmlet_vm_migrate(VmletVm *vm, VmOpType type, GHashTable *selector, gboolean force);
/* Gives the operation uid the name its client chose (metadata.name or one generated from
 * metadata.generateName; the API checked it is free) in place of "<type>-<vm>-<uid>". */
void vmlet_vm_name_operation(VmletVm *vm, const char *uid, const char *name);
/* Deleting an operation: an Evict or Migrate under way is cancelled (DVP). FALSE when there
 * is no operation of that name. */
gboolean vmlet_vm_delete_operation(VmletVm *vm, const char *name);

/* The VirtualMachineBlockDeviceAttachments naming this VM (VmletAttachment *, sorted) and
 * the problems found with them across VMs (name -> VmbdaProblem *, may be NULL); retry:
 * try again the ones QEMU refused (drop-ins changed). */
void vmlet_vm_set_attachments(VmletVm *vm, GPtrArray *attachments, GHashTable *conflicts,
                              gboolean retry);
VmletAttachCtl *vmlet_vm_get_attachments(VmletVm *vm);

/* QMP stop / cont of a Running VM (KubeVirt's pause and unpause), completed when QEMU has
 * answered; the Paused condition follows QEMU's STOP and RESUME events. */
void vmlet_vm_pause_async(VmletVm *vm, gboolean pause, GAsyncReadyCallback callback,
                          gpointer user_data);
gboolean vmlet_vm_pause_finish(VmletVm *vm, GAsyncResult *result, GError **error);

/* Migration, for the manager on behalf of the peer API (vm-migrate.c). */
/* A VM arriving: prepares its incoming QEMU; task is answered with the ports or why not. */
void vmlet_vm_migrate_in(VmletVm *vm, VmSpec *spec, JsonObject *request, const char *peer,
                         const char *peer_dn, GTask *task);
/* The node at the other end of the VM's migration, or NULL. */
const char *vmlet_vm_migration_peer(VmletVm *vm);
JsonNode *vmlet_vm_migration_describe(VmletVm *vm);
void vmlet_vm_migration_commit(VmletVm *vm, guint64 generation, GTask *task);
gboolean vmlet_vm_migration_abort(VmletVm *vm, const char *why, GError **error);
/* Still arriving: it has no drop-in yet, and a reload must not take it for deleted. */
gboolean vmlet_vm_is_migrating_in(VmletVm *vm);

/* What a drain (manager-drain.c) needs of a VM. */
/* A QEMU of this node runs it (not one arriving, not one handed over). */
gboolean vmlet_vm_runs_here(VmletVm *vm);
/* Its outgoing migration is under way. */
gboolean vmlet_vm_is_migrating_out(VmletVm *vm);
/* Operation uid: FALSE when there is none; else whether it ended, how, its progress (-1
 * before any) and its reason (owned by the VM, valid until it changes). */
gboolean vmlet_vm_operation_outcome(VmletVm *vm, const char *uid, gboolean *ended,
                                    gboolean *ok, gint *progress, const char **reason);
/* Cancels the outgoing migration unless it has reached the switchover (from there on the
 * guest is paused for the last copy and the destination may already run it: it is let
 * finish). TRUE when it was cancelled. */
gboolean vmlet_vm_cancel_migration_before_switchover(VmletVm *vm, const char *reason);
/* A graceful stop (the ACPI button, then the grace period) that is not the user's: the
 * VM is not marked stopped manually, so its run policy starts it again once the node is
 * uncordoned. */
void vmlet_vm_stop_for_maintenance(VmletVm *vm);

/* The drop-in was removed: Terminating, stop QEMU (gracefully), delete the record, "gone". */
void vmlet_vm_delete(VmletVm *vm);

/* The VM in DVP's shape: apiVersion, kind, metadata, spec, status. */
JsonNode *vmlet_vm_to_json(VmletVm *vm);
/* Its recent VirtualMachineOperations, newest last. */
JsonNode *vmlet_vm_operations_json(VmletVm *vm);
