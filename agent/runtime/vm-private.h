/* The VM object's insides, shared by its files (one concern each):
 *
 *   vm.c            the object, its inputs (spec, warnings, attachments), adopt, reconcile
 *   vm-phase.c      the phase transition table; persisting and announcing changes
 *   vm-job.c        the job slot's rules (what a request does to the job in progress)
 *   vm-ops.c        VirtualMachineOperations: requests through the job slot
 *   vm-start.c      a start in named steps: prepare spec, prepare host, launch, finish
 *   vm-host.c       the "prepare host" step: run dir, seed ISO, NVRAM, files for QEMU's user
 *   vm-stop.c       stopping, QEMU's exit by intent, crash-loop backoff, QEMU's events
 *   vm-resources.c  live coreFraction changes; status.resources
 *   vm-status.c     the VM in DVP's shape
 *
 * Nothing outside agent/runtime/vm*.c includes this header. */
#pragma once

#include <syslog.h>

#include "instance.h"
#include "plan.h"
#include "vm-job.h"
#include "vm.h"

/* Crash-loop backoff: 1 s doubling to 5 min; reset after 10 min of stable running. */
#define VM_BACKOFF_MIN_S 1
#define VM_BACKOFF_MAX_S 300
#define VM_BACKOFF_RESET_S 600
/* Operations kept per VM, in memory (DVP keeps VirtualMachineOperations as objects). */
#define VM_MAX_OPERATIONS 16

struct _VmletVm {
  GObject parent;
  VmletVmEnv *env;
  char *namespace, *name;
  VmSpec *spec;          /* desired; NULL when the drop-in is unusable */
  char *source;          /* the drop-in file */
  char *problem;         /* why the VM cannot start, for the Pending condition */
  GStrv warnings;        /* about the desired spec, for status.warnings */
  VmPhase phase;
  VmletVmRecord *rec;    /* persisted runtime state */
  VmPlan *plan;          /* what the running QEMU was started from */
  VmletInstance *qemu;   /* the VM's QEMU; NULL when none runs */
  VmJob job;             /* the job slot (vm-job.h), mirrored in rec */
  VmStopEnd stop_end;    /* how the stop in the slot is going */
  guint grace_timer, backoff_timer, hot_save;
  guint backoff_s;
  gint64 spawn_mono_us, running_since_mono_us;
  gboolean unsynced_save; /* the next save may skip fsync (see vm-start.c, on_cont) */
  gboolean paused;       /* QEMU's vCPUs stopped (QMP stop), from the STOP/RESUME events */
  char *resources_error; /* why a live change of them failed */
  char *confine_error;   /* why QEMU's confinement could not be prepared for an adopted
                          * QEMU (disks hot-plugged to it are not handed to its user) */
  char *last_exit;       /* "QEMU exited unexpectedly: ..." for the condition */
  char *save_error;      /* why the record could not be written, for its condition */
  char *held;            /* why the record cannot be read: the VM is left alone */
  const char *held_reason; /* the Ready condition's reason while held */
  char *moved_to;        /* the node it was migrated to, once handed over */
  GBytes *carried_seed, *carried_nvram; /* an incoming VM's files, written at its start */
  GPtrArray *ops;        /* VmOp *, oldest first (vm-ops.c) */
  struct _VmMigOut *mig_out; /* the outgoing migration in the slot (vm-migrate-out.c) */
  struct _VmMigIn *mig_in;   /* the incoming one (vm-migrate-in.c) */
  gboolean recovering;       /* a journal's job rebuilt, waiting to act (vm-migrate-recover.c) */
  struct _VmMigrationState *mig_state; /* status.migrationState, NULL before any */
  gboolean after_migration;  /* a request waits for the migration to end: */
  VmRequest after_request;
  gboolean after_force;
  VmletAttachCtl *hot;   /* its VirtualMachineBlockDeviceAttachments */
};

/* vm.c */
void vm_set_str(char **slot, const char *value);
/* Emits "changed" / "gone" (vm.h). */
void vm_changed(VmletVm *vm);
void vm_emit_gone(VmletVm *vm);
gboolean vm_qemu_alive(VmletVm *vm);
gboolean vm_want_running(VmletVm *vm);
gboolean vm_deleting(VmletVm *vm);

/* vm-phase.c */
/* Moves to phase when the table allows it (an illegal transition is a bug: logged, refused)
 * and persists and announces it. */
void vm_set_phase(VmletVm *vm, VmPhase phase);
/* Sets the phase QEMU was found in when it is adopted (not a transition), persisted and
 * announced like one. */
void vm_restore_phase(VmletVm *vm, VmPhase phase);
gboolean vm_phase_from_name(const char *name, VmPhase *out);
gboolean vm_phase_can_move(VmPhase from, VmPhase to);
void vm_save(VmletVm *vm);
/* What the attachments need to know of their VM: its spec, and why it does not run. */
void vm_sync_attachments(VmletVm *vm);
/* The job slot changed: mirrored in the record (saved with the next save). */
void vm_set_job(VmletVm *vm, VmJobKind kind, VmStopIntent intent, gboolean force);

/* vm-ops.c */
void vm_op_free(gpointer op);
/* An Evict or Migrate's progress (0-100) and the node chosen for it. */
void vm_ops_progress(VmletVm *vm, const char *uid, gint progress, const char *target);
/* The migration uid switched over: the guest's pause (at most), QEMU's downtime and how
 * long the memory took, in ms. */
void vm_ops_switched_over(VmletVm *vm, const char *uid, gint64 paused_ms,
                          gint64 qemu_downtime_ms, gint64 memory_ms);
/* Moves the operations of a type that are under way to result. */
void vm_ops_complete(VmletVm *vm, VmOpType type, gboolean ok, const char *reason);
/* Carries out a request through the job slot; NULL, or why it was refused. */
char *vm_request(VmletVm *vm, VmRequest request, gboolean force);
/* A migration has ended with the VM here: the request it held back is carried out. */
void vm_after_migration(VmletVm *vm);

/* vm-start.c */
VmletConfine *vm_confinement(VmletVm *vm, GError **error);
typedef enum {
  VM_START_NORMAL,   /* -S, then cont */
  VM_START_INCOMING, /* -incoming defer: the state comes from a migration */
} VmStartMode;
void vm_start(VmletVm *vm, VmStartMode mode);
/* The QEMU found in the record at vmletd's start is taken over. */
void vm_start_adopt(VmletVm *vm, VmletInstance *qemu);

/* vm-stop.c */
/* Carries out the STOP job in the slot: the ACPI button and a grace period, or quit. */
void vm_stop_begin(VmletVm *vm);
/* QEMU's "exited": what it means follows from the job that was in the slot. */
void vm_on_exited(VmletInstance *qemu, gint cause, const char *how, VmletVm *vm);
/* QEMU's events that concern the VM as a whole (power-off, pause). */
void vm_watch_monitor(VmletVm *vm, VmletMonitor *mon);
void vm_schedule_restart(VmletVm *vm);
/* Something the operator should read in the log (a syslog priority, LOG_INFO..LOG_ERR):
 * emitted as "note", logged by the daemon (library code never logs). */
void vm_note(VmletVm *vm, int priority, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* The VM is deleted and has no QEMU: its files and record go, then "gone". */
void vm_forget(VmletVm *vm);
/* The VM runs on another node now: its drop-ins are put aside (a tombstone keeps this node
 * from ever starting it again from one it could not move), its files and record go. */
void vm_forget_migrated(VmletVm *vm, const char *target);
/* A drop-in that holds one object is renamed NAME.json.migrated-to-TARGET (kept to see,
 * no longer read); one that holds more (a List) is left as it is. */
void vm_put_aside(const char *path, const char *target);

/* vm-host.c */
/* The files of a start, made and handed to QEMU's user; *log_fd: QEMU's log, opened. */
gboolean vm_host_prepare(VmletVm *vm, const VmPlan *plan, const VmletConfine *confine,
                         int *log_fd, GError **error);
/* A digest of the Secret the seed is built from (sorted keys and values), so a changed
 * Secret is noticed without keeping its content. NULL when there is no such Secret. */
char *vm_secret_digest(VmletVm *vm);
/* A deleted VM leaves nothing in the run dir: sockets, its seed ISO, QEMU's log. */
void vm_host_cleanup(VmletVm *vm);
/* A directory vmlet made, its files and one level of subdirectories. */
void vm_host_remove_dir(const char *dir);

/* vm-resources.c */
void vm_apply_core_fraction(VmletVm *vm);
JsonNode *vm_resources_json(VmletVm *vm);

/* vm-status.c */
JsonArray *vm_pending_changes(VmletVm *vm);
