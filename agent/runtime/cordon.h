/* A node's maintenance mode (DVP's "Режим обслуживания", kubectl cordon/drain/uncordon):
 * whether the node is cordoned, and the drain that empties it, one entry per VM that ran
 * here when it began. Persisted as <state-dir>/cordon.json, replaced atomically, so that a
 * cordon survives restarts and reboots and a drain interrupted by a restart of vmletd
 * resumes where it was; uncordon removes the file. Pure data: manager-drain.c acts on it.
 *
 * A VM's drain states, as a table (vmlet_cordon_vm_move refuses any other step):
 *
 *   Pending ──► Evicting ──► Moved          (its Evict completed: it runs on a peer)
 *      │  ▲        │
 *      │  └────────┤                        (a failure worth another try, a restart)
 *      ▼           ▼
 *   Unplaceable ◄──┘                        (no peer can take it: the reason is kept)
 *      │
 *      ▼ --force
 *   Stopping ──► Stopped                    (stopped gracefully here, its spec kept)
 *
 * Pending, Unplaceable, Stopping can also go to Moved (the VM left by other means, or was
 * deleted), Pending to Stopped (the VM stopped by itself before its turn), and Unplaceable
 * back to Pending (a new drain tries again). */
#pragma once

#include <glib.h>

typedef enum {
  CORDON_VM_PENDING,
  CORDON_VM_EVICTING,
  CORDON_VM_MOVED,
  CORDON_VM_UNPLACEABLE,
  CORDON_VM_STOPPING,
  CORDON_VM_STOPPED,
} CordonVmState;

typedef struct {
  char *namespace, *name;
  CordonVmState state;
  char *operation; /* the Evict's name while Evicting (evacuation-VM-UID) */
  char *op_uid;    /* its uid, known only to this vmletd (NULL after a restart) */
  char *target;    /* the node it moved to */
  char *reason;    /* why Unplaceable, or the last failed try's reason */
  guint attempts;  /* Evicts tried that failed for a reason worth another try */
  gint64 not_before_us; /* monotonic: a busy retry waits until then (not persisted) */
} CordonVm;

typedef struct {
  gint64 since_us;   /* cordoned since (wall clock) */
  gboolean draining; /* a drain has begun and not ended */
  gboolean force;    /* ... unplaceable VMs are stopped instead of reported */
  gint64 drain_started_us, drain_ended_us; /* 0: not yet */
  GPtrArray *vms;    /* CordonVm *, in the order they were added */
} VmletCordon;

/* Bounds of the file: a drain lists the node's VMs, far fewer than this. */
#define VMLET_CORDON_MAX_VMS 4096
#define VMLET_CORDON_MAX_BYTES (1024 * 1024)

VmletCordon *vmlet_cordon_new(gint64 since_us);
void vmlet_cordon_free(VmletCordon *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletCordon, vmlet_cordon_free)

char *vmlet_cordon_path(const char *state_dir);
/* The cordon of state_dir: TRUE with *out NULL when the node is not cordoned (no file);
 * FALSE with the file, the JSON path and what is wrong for a file that cannot be used. */
gboolean vmlet_cordon_load(const char *state_dir, VmletCordon **out, GError **error);
/* Written atomically (temp file, fsync, rename, directory fsync). */
gboolean vmlet_cordon_save(const VmletCordon *c, const char *state_dir, GError **error);
/* Uncordoned: the file goes (absent already is fine). */
gboolean vmlet_cordon_remove(const char *state_dir, GError **error);

const char *vmlet_cordon_vm_state_name(CordonVmState state);
gboolean vmlet_cordon_vm_state_from_name(const char *name, CordonVmState *out);
/* Moved, Unplaceable and Stopped end a VM's part in the drain. */
gboolean vmlet_cordon_vm_state_is_final(CordonVmState state);
gboolean vmlet_cordon_vm_can_move(CordonVmState from, CordonVmState to);
/* Moves v along the table; an illegal step is refused (error names both states). */
gboolean vmlet_cordon_vm_move(CordonVm *v, CordonVmState to, GError **error);

/* The entry for ns/name, or NULL. */
CordonVm *vmlet_cordon_find(VmletCordon *c, const char *ns, const char *name);
/* A new Pending entry (the one there already, when there is one). */
CordonVm *vmlet_cordon_add(VmletCordon *c, const char *ns, const char *name);
/* How many VMs are not final yet. */
guint vmlet_cordon_left(const VmletCordon *c);
guint vmlet_cordon_count(const VmletCordon *c, CordonVmState state);

/* What a failed Evict's reason means for the drain. */
typedef enum {
  CORDON_RETRY_BUSY,     /* a limit was reached (a slot, a peer's inbound limit): try again,
                          * not counted against the VM */
  CORDON_RETRY,          /* something that may pass (a prepare failed, not converging) */
  CORDON_UNPLACEABLE,    /* no peer matches or the VM cannot migrate: report it */
} CordonVerdict;
CordonVerdict vmlet_cordon_classify(const char *reason);
/* Tries of CORDON_RETRY before a VM is reported Unplaceable. */
#define VMLET_CORDON_MAX_ATTEMPTS 3

/* "1 VM", "2 VMs". */
char *vmlet_cordon_plural_vms(guint n);
