/* A VM's job slot (libvirt's job model, kept small): at most one job changes a VM at a
 * time, and a table says what a new request does to the job already in the slot.
 *
 * Jobs: START (from the launch of QEMU until it runs), STOP (from the first step of a stop
 * until QEMU has exited), whose intent says why QEMU goes away and so what its exit means:
 * a user's stop, a restart, the guest's own power-off, a deletion; MIGRATE_OUT and
 * MIGRATE_IN, a live migration from or to this node (vm-migrate*.c). Hotplug runs only
 * while the slot is empty and the VM Running. The slot is saved in the VM's record, so a
 * restarted vmletd carries on with a restart or a stop it finds half-done. */
#pragma once

#include <glib.h>

typedef enum {
  VM_JOB_NONE,
  VM_JOB_START,
  VM_JOB_STOP,
  VM_JOB_MIGRATE_OUT,
  VM_JOB_MIGRATE_IN,
} VmJobKind;

/* Why QEMU is being stopped: what its exit then means. */
typedef enum {
  VM_STOP_USER,    /* a Stop operation, or a run policy that wants the VM off: Stopped */
  VM_STOP_RESTART, /* a Restart, or restartApprovalMode Automatic applying changes: started
                    * again at once */
  VM_STOP_GUEST,   /* the guest powered itself off: Stopped, or started again (AlwaysOn) */
  VM_STOP_DELETE,  /* the drop-in went: the record is deleted and the VM forgotten */
} VmStopIntent;

/* How the stop went, for the Stop operation's reason. */
typedef enum {
  VM_STOP_END_FORCED,        /* quit without waiting for the guest */
  VM_STOP_END_BY_GUEST,      /* the guest powered off (on the ACPI button, or by itself) */
  VM_STOP_END_GRACE_EXPIRED, /* terminationGracePeriodSeconds ran out: quit */
} VmStopEnd;

typedef struct {
  VmJobKind kind;
  VmStopIntent intent; /* STOP only */
  gboolean force;      /* STOP only: no ACPI button, quit at once */
} VmJob;

/* What is asked of the VM: operations, the run policy, the guest, the drop-in. */
typedef enum {
  VM_REQ_START,
  VM_REQ_STOP,
  VM_REQ_RESTART,
  VM_REQ_DELETE,
  VM_REQ_GUEST_OFF, /* QEMU reported SHUTDOWN by the guest */
  VM_REQ_MIGRATE,   /* an Evict or a Migrate */
} VmRequest;

/* What a request does to the job in the slot. */
typedef enum {
  VM_RULE_BEGIN,    /* the slot is empty: the request becomes the job */
  VM_RULE_JOIN,     /* the job already does what is asked: it completes with the job */
  VM_RULE_RETARGET, /* the job is a stop: its intent becomes the request's */
  VM_RULE_PREEMPT,  /* a start is cut short: QEMU is stopped at once, with the request's
                     * intent */
  VM_RULE_REFUSE,   /* not while this job runs */
  VM_RULE_CANCEL,   /* an outgoing migration is cancelled (unless the destination already
                     * owns the VM); the request is carried out once it has ended */
} VmJobRule;

VmJobRule vm_job_rule(const VmJob *job, VmRequest request);
/* The stop intent a request asks for (START asks for a restart of a stopping VM). */
VmStopIntent vm_job_intent_of(VmRequest request);

const char *vm_job_kind_name(VmJobKind kind);
const char *vm_stop_intent_name(VmStopIntent intent);
/* From the record; FALSE for a name this vmletd does not know (the job is then dropped:
 * QEMU's own state decides). */
gboolean vm_job_parse(const char *kind, const char *intent, gboolean force, VmJob *out);
