#include "vm-job.h"

static const char *const kind_names[] = {
    [VM_JOB_NONE] = "None",
    [VM_JOB_START] = "Start",
    [VM_JOB_STOP] = "Stop",
    [VM_JOB_MIGRATE_OUT] = "MigrateOut",
    [VM_JOB_MIGRATE_IN] = "MigrateIn",
};

static const char *const intent_names[] = {
    [VM_STOP_USER] = "User",
    [VM_STOP_RESTART] = "Restart",
    [VM_STOP_GUEST] = "GuestPowerOff",
    [VM_STOP_DELETE] = "Delete",
};

/* The slot as the table sees it: empty, a start, or a stop with its intent. */
enum { SLOT_NONE, SLOT_START, SLOT_STOP_USER, SLOT_STOP_RESTART, SLOT_STOP_GUEST,
       SLOT_STOP_DELETE, SLOT_MIGRATE_OUT, SLOT_MIGRATE_IN, N_SLOTS };

#define B VM_RULE_BEGIN
#define J VM_RULE_JOIN
#define T VM_RULE_RETARGET
#define P VM_RULE_PREEMPT
#define R VM_RULE_REFUSE
#define C VM_RULE_CANCEL

/* Rows: requests; columns: the slot. A deletion wins over everything and a stop over a
 * start; a start or restart asked of a stopping VM turns the stop into a restart; nothing
 * brings back a VM being deleted. A start cut short is stopped without the ACPI button:
 * the guest is still in its firmware, if it runs at all. A migration begins only from an
 * empty slot; a stop, a deletion or the guest's power-off during an outgoing one cancels
 * it first; an incoming VM takes nothing but its deletion before it is committed here. */
static const VmJobRule rules[][N_SLOTS] = {
    /*                      NONE START STOP:user restart guest delete MIG:out in */
    [VM_REQ_START] /*    */ = {B, J, T, J, T, R, R, R},
    [VM_REQ_STOP] /*     */ = {B, P, J, T, T, J, C, R},
    [VM_REQ_RESTART] /*  */ = {B, P, T, J, T, R, R, R},
    [VM_REQ_DELETE] /*   */ = {B, P, T, T, T, J, C, C},
    [VM_REQ_GUEST_OFF] /**/ = {B, P, J, J, J, J, C, J},
    [VM_REQ_MIGRATE] /*  */ = {B, R, R, R, R, R, R, R},
};

#undef B
#undef J
#undef T
#undef P
#undef R
#undef C

static guint slot_of(const VmJob *job)
{
  switch (job->kind) {
  case VM_JOB_NONE:
    return SLOT_NONE;
  case VM_JOB_START:
    return SLOT_START;
  case VM_JOB_MIGRATE_OUT:
    return SLOT_MIGRATE_OUT;
  case VM_JOB_MIGRATE_IN:
    return SLOT_MIGRATE_IN;
  case VM_JOB_STOP:
    break;
  }
  switch (job->intent) {
  case VM_STOP_USER:
    return SLOT_STOP_USER;
  case VM_STOP_RESTART:
    return SLOT_STOP_RESTART;
  case VM_STOP_GUEST:
    return SLOT_STOP_GUEST;
  case VM_STOP_DELETE:
    return SLOT_STOP_DELETE;
  }
  return SLOT_STOP_USER;
}

VmJobRule vm_job_rule(const VmJob *job, VmRequest request)
{
  return rules[request][slot_of(job)];
}

VmStopIntent vm_job_intent_of(VmRequest request)
{
  switch (request) {
  case VM_REQ_STOP:
    return VM_STOP_USER;
  case VM_REQ_START:
  case VM_REQ_RESTART:
    return VM_STOP_RESTART;
  case VM_REQ_DELETE:
    return VM_STOP_DELETE;
  case VM_REQ_GUEST_OFF:
    return VM_STOP_GUEST;
  case VM_REQ_MIGRATE:
    break;
  }
  return VM_STOP_USER;
}

const char *vm_job_kind_name(VmJobKind kind)
{
  return kind_names[kind];
}

const char *vm_stop_intent_name(VmStopIntent intent)
{
  return intent_names[intent];
}

gboolean vm_job_parse(const char *kind, const char *intent, gboolean force, VmJob *out)
{
  VmJob job = {.force = force};
  gboolean known = FALSE;
  for (guint i = 0; kind && i < G_N_ELEMENTS(kind_names); i++)
    if (g_str_equal(kind, kind_names[i])) {
      job.kind = (VmJobKind)i;
      known = TRUE;
    }
  if (!known)
    return FALSE;
  if (job.kind == VM_JOB_STOP) {
    known = FALSE;
    for (guint i = 0; intent && i < G_N_ELEMENTS(intent_names); i++)
      if (g_str_equal(intent, intent_names[i])) {
        job.intent = (VmStopIntent)i;
        known = TRUE;
      }
  }
  if (known)
    *out = job;
  return known;
}
