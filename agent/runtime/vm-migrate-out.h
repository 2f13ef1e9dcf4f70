/* The source's job, shared by vm-migrate-out.c (the job and its table of steps),
 * vm-migrate-out-steps.c, -run.c and -commit.c (each step), -end.c (its end, either way)
 * and vm-migrate-recover.c (a job rebuilt from its journal). Private to those files. */
#pragma once

#include "qemu-mig.h"
#include "vm-migrate.h"

/* The steps, in order (vm-migrate-out.c's table). */
enum {
  MIG_STEP_CHOOSE,
  MIG_STEP_PREPARE,
  MIG_STEP_SETUP,
  MIG_STEP_MIRROR,
  MIG_STEP_MIGRATE,
  MIG_STEP_SWITCHOVER,
  MIG_STEP_COMMIT,
  MIG_STEP_HAND_OVER,
};

typedef struct _VmMigOut {
  VmletVm *vm;               /* not owned: the VM owns the job */
  VmletMigJournal *journal;
  guint step;                /* index in vm-migrate-out.c's steps */
  gint progress;             /* DVP's percent, -1 before the first step */
  char *op_uid;              /* the Evict or Migrate */
  GHashTable *selector;      /* Migrate's nodeSelector, or NULL */
  gboolean force, auto_converge;
  gboolean was_paused;       /* the user had paused the VM: it stays paused on failure */
  VmletPeer *peer;           /* the destination */
  GPtrArray *disks;          /* VmMigDisk *, as the destination was told */
  GPtrArray *mirror;         /* VmPlanDisk * copied over NBD (local, writable) */
  guint stream_port, nbd_port;
  char *tls_dir;             /* QEMU's copy of the client credentials */
  char *marker_token;        /* the shared-storage markers' (vm-migrate.h) */
  GPtrArray *markers;        /* their paths (char *), while the prepare is asked */
  GCancellable *cancel;      /* every call of the job (mig_out_gone) */
  GCancellable *undo_cancel; /* the undo's calls, once failing (vm-migrate-out.c) */
  gulong migration_id;       /* the monitor's "migration" signal */
  guint poll_timer, retry_timer;
  gboolean polling, polling_jobs, heartbeat_busy, switching;
  guint heartbeat_misses;
  VmletMigrationInfo info;   /* the last query-migrate */
  guint64 disk_done, disk_total;
  guint64 best_remaining;    /* convergence: the least RAM left seen */
  gint64 best_at_us;
  guint downtime_ms, escalations;
  gint64 throttle_max;       /* auto-converge's highest vCPU throttle seen (percent) */
  gint64 paused_us;          /* when QEMU stopped the vCPUs for the switchover */
  gint64 qemu_downtime_ms, memory_ms; /* QEMU's own measures, once completed */
  gboolean committed;        /* the destination runs the VM */
  gboolean commit_busy;      /* a commit is in flight: its answer decides */
  gboolean gave_up;          /* the destination answered the commit with "Aborted": no
                              * copy runs there, this one may resume */
  gboolean failing, ended;
  gboolean recovered;        /* rebuilt from the journal by a restarted vmletd: no slot */
} VmMigOut;

/* Every call the job makes (to QEMU or to the peer) passes m->cancel, and its callback
 * asks this before it touches m: mig_out_free() cancels, so a reply that comes after the
 * job ended (a failure resumed the VM, QEMU exited) finds m gone and says so. */
static inline gboolean mig_out_gone(const GError *error)
{
  return g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

/* vm-migrate-out.c */
void mig_out_next(VmMigOut *m);
/* Undoes everything and resumes the VM here (reason: DVP's, e.g. "NotConverging"); after
 * the commit was sent, waits for the destination instead. */
void mig_out_fail(VmMigOut *m, const char *reason, const char *message);
void mig_out_set_progress(VmMigOut *m, gint progress);
VmletMonitor *mig_out_monitor(VmMigOut *m);
const char *mig_out_step_name(VmMigOut *m);
void mig_out_free(VmMigOut *m);
/* The job again from its journal (taken), after vmletd restarted: at the journal's step,
 * registered, holding the VM's job slot but no migration slot; the peer is looked up when
 * recovery acts (peers.d is read by the first reload). */
VmMigOut *mig_out_rebuild(VmletVm *vm, VmletMigJournal *j);
/* Once the plan is known (the adopted QEMU's): the disks that may have been mirrored. */
void mig_out_recovered_disks(VmMigOut *m);

/* vm-migrate-out-steps.c */
void mig_out_choose(VmMigOut *m);
void mig_out_prepare(VmMigOut *m);
void mig_out_remove_markers(VmMigOut *m);
void mig_out_setup(VmMigOut *m);
void mig_out_mirror(VmMigOut *m);
void mig_out_migrate(VmMigOut *m);
void mig_out_switchover(VmMigOut *m);
void mig_out_commit(VmMigOut *m);
void mig_out_hand_over(VmMigOut *m);
/* The commit's answer did not come: ask again later, never resume. */
void mig_out_commit_later(VmMigOut *m, const char *why);
/* Best effort: the destination drops its incoming QEMU. */
void mig_out_tell_abort(VmMigOut *m, const char *why);
/* Progress, convergence and the peer's heartbeat, every 500 ms while copying. */
void mig_out_watch(VmMigOut *m);
/* A call to the destination about this migration: /peer/v1/migrations/ID + tail. */
void mig_out_peer_call(VmMigOut *m, const char *method, const char *tail, JsonNode *body,
                       guint timeout_s, GCancellable *c, GAsyncReadyCallback cb, gpointer data);

/* vm-migrate-wire.c: the prepare request (the VM, its disks and its files) */
JsonNode *mig_out_prepare_request(VmMigOut *m, GError **error);
