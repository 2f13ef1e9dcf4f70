/* The attachment controller's insides, shared by its files:
 *
 *   attachctl.c         the object, its inputs, and the reconcile that plugs what is wanted
 *   attachctl-ready.c   whether an attachment can be plugged now; a start's attachments
 *   attachctl-qmp.c     one device's QMP operations; taking over a QEMU (probe, locate)
 *   attachctl-status.c  the record of plugged devices and the DVP-shaped status
 *
 * Nothing outside agent/runtime/attachctl*.c includes this header. */
#pragma once

#include "attachctl.h"

typedef enum {
  HOT_ATTACHING, /* blockdev-add + device_add sent (or QEMU started with it, unconfirmed) */
  HOT_ATTACHED,
  HOT_DETACHING, /* device_del sent; waiting for DEVICE_DELETED */
  HOT_RELEASING, /* the device is gone; blockdev-del sent */
} HotState;

#define HOT_N_STATES (HOT_RELEASING + 1)
extern const char *const hot_state_names[HOT_N_STATES];

typedef struct {
  VmletAttachment *att; /* the spec it was plugged for (the drop-in may be gone) */
  VmPlanDisk *disk;     /* device id, node names, bus and slot */
  HotState state;
  char *message;        /* why it waits, for the status */
  gint64 created_us;
  guint gen;            /* identifies the operation in flight */
  guint timer;          /* the DEVICE_DELETED wait, or a retry */
  gboolean busy;        /* a QMP operation of this entry is in flight */
  gboolean timed_out;   /* DEVICE_DELETED is overdue */
  gboolean retry;       /* device_del or blockdev-del failed: try again on the recheck */
  gboolean cleanup;     /* removing nodes an interrupted attach left, before attaching */
} HotEntry;

struct _VmletAttachCtl {
  GObject parent;
  char *namespace, *vm_name;
  const VmletNode *node;
  VmletInventory **inv;
  VmSpec *spec;
  char *not_running;     /* NULL while the VM runs */
  gboolean paused;
  GPtrArray *desired;    /* VmletAttachment * */
  GHashTable *conflicts; /* name -> VmbdaProblem *, from the manager */
  GHashTable *failures;  /* name -> VmbdaProblem *, what QEMU refused */
  GHashTable *waiting;   /* name -> VmbdaProblem *, why it is not plugged yet */
  GHashTable *entries;   /* name -> HotEntry * */
  GHashTable *first_seen; /* name -> gint64 *: creation time when the object has none */
  GHashTable *last_slots; /* name -> GUINT_TO_POINTER(slot + 1), kept across restarts */
  const VmletConfine *confine; /* QEMU's user, to give disks to; NULL: none */
  VmletMonitor *mon;
  gulong event_id;
  GCancellable *cancel;  /* every QMP operation of the current QEMU */
  gboolean probed;       /* QEMU's state has been read: operations may start */
  guint64 ports;         /* root ports hot-plugged disks may use in this QEMU */
  guint recheck;
  guint next_gen;
  gboolean dirty;        /* something changed since the last "changed" */
  gboolean recheck_due;  /* in the recheck: failed QMP steps may be retried */
};


/* An operation in flight for one entry; its result counts only while gen matches. */
typedef struct {
  VmletAttachCtl *ctl;
  char *name;
  guint gen;
} Op;

Op *ctl_op_new(VmletAttachCtl *ctl, const char *name, HotEntry *e);
void ctl_op_free(Op *op);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Op, ctl_op_free)
/* The entry an operation was started for, or NULL when QEMU went away or the entry was
 * replaced meanwhile (the result then means nothing). */
HotEntry *ctl_op_entry(Op *op, const GError *error);

/* attachctl.c */
void ctl_changed(VmletAttachCtl *ctl);
void ctl_set_message(HotEntry *e, const char *message);
GHashTable *ctl_problem_table(void);
VmletAttachment *ctl_find_desired(VmletAttachCtl *ctl, const char *name);
gboolean ctl_active(VmletAttachCtl *ctl);
void ctl_explain_detach(VmletAttachCtl *ctl, HotEntry *e);
void ctl_reconcile(VmletAttachCtl *ctl);
void ctl_set_waiting(VmletAttachCtl *ctl, const char *name, VmbdaProblem *p);
void ctl_clear_waiting(VmletAttachCtl *ctl, const char *name);

/* attachctl-ready.c */
GPtrArray *ctl_holders(VmletAttachCtl *ctl);
/* The disk att would plug now, or NULL with why not (in ctl->waiting). */
VmPlanDisk *ctl_ready_disk(VmletAttachCtl *ctl, VmletAttachment *att, GPtrArray *others);
HotEntry *ctl_add_entry(VmletAttachCtl *ctl, VmletAttachment *att, VmPlanDisk *disk,
                        HotState state);
void ctl_remove_entry(VmletAttachCtl *ctl, const char *key);

/* attachctl-qmp.c */
void ctl_start_attach(VmletAttachCtl *ctl, VmletAttachment *att, VmPlanDisk *disk);
void ctl_start_detach(VmletAttachCtl *ctl, const char *name, HotEntry *e);
void ctl_start_release(VmletAttachCtl *ctl, const char *name, HotEntry *e);
