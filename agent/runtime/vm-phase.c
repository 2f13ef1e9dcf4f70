/* A VM's phase moves only along the edges of this table (Cloud Hypervisor's
 * VmState::valid_transition). Anything else is a bug in vmlet: it is reported as a GLib
 * critical (fatal in the tests, G_DEBUG=fatal-criticals; logged by vmletd) and refused, so
 * the VM keeps the phase it had. Every transition is persisted before it is announced.
 * Adopting a QEMU after a restart of vmletd is not a transition: the phase is restored
 * from what QEMU says (vm_restore_phase). */
#include "vm-private.h"

static const char *const phase_names[] = {
    [VM_PHASE_PENDING] = "Pending",
    [VM_PHASE_STARTING] = "Starting",
    [VM_PHASE_RUNNING] = "Running",
    [VM_PHASE_STOPPING] = "Stopping",
    [VM_PHASE_STOPPED] = "Stopped",
    [VM_PHASE_TERMINATING] = "Terminating",
    [VM_PHASE_MIGRATING] = "Migrating",
};

#define N_PHASES (VM_PHASE_MIGRATING + 1)
#define TO(p) (1u << (p))

/* Where each phase may go. Pending and Stopped start QEMU, or go back and forth as the spec
 * becomes usable or not; a start that fails before QEMU runs is Pending with the reason;
 * any phase with a QEMU can end in Stopped (its exit) or begin a stop; every phase but
 * Terminating can be deleted, and Terminating is the last. A Running VM migrates and is
 * Running again here (failed, cancelled) or elsewhere (then forgotten here); an incoming VM
 * is Migrating from Pending until it is committed (Running) or abandoned (Terminating). */
static const guint transitions[N_PHASES] = {
    [VM_PHASE_PENDING] = TO(VM_PHASE_STARTING) | TO(VM_PHASE_STOPPED) | TO(VM_PHASE_TERMINATING) |
                         TO(VM_PHASE_MIGRATING),
    [VM_PHASE_STARTING] = TO(VM_PHASE_RUNNING) | TO(VM_PHASE_STOPPING) | TO(VM_PHASE_STOPPED) |
                          TO(VM_PHASE_TERMINATING),
    [VM_PHASE_RUNNING] = TO(VM_PHASE_STOPPING) | TO(VM_PHASE_STOPPED) | TO(VM_PHASE_TERMINATING) |
                         TO(VM_PHASE_MIGRATING),
    [VM_PHASE_STOPPING] = TO(VM_PHASE_STOPPED) | TO(VM_PHASE_TERMINATING),
    [VM_PHASE_STOPPED] = TO(VM_PHASE_STARTING) | TO(VM_PHASE_PENDING) | TO(VM_PHASE_TERMINATING),
    [VM_PHASE_TERMINATING] = 0,
    [VM_PHASE_MIGRATING] = TO(VM_PHASE_RUNNING) | TO(VM_PHASE_STOPPED) | TO(VM_PHASE_TERMINATING),
};

const char *vm_phase_name(VmPhase phase)
{
  return phase_names[phase];
}

gboolean vm_phase_from_name(const char *name, VmPhase *out)
{
  for (guint i = 0; name && i < N_PHASES; i++)
    if (g_str_equal(name, phase_names[i])) {
      *out = (VmPhase)i;
      return TRUE;
    }
  return FALSE;
}

gboolean vm_phase_can_move(VmPhase from, VmPhase to)
{
  return (transitions[from] & TO(to)) != 0;
}

void vm_save(VmletVm *vm)
{
  g_autoptr(GError) error = NULL;
  if (vm->held)
    return;
  /* The VM keeps running; the next successful save catches up. Until then the failure is
   * its own condition: a restarted agent could not re-adopt this VM from a stale record. */
  gboolean batched = vm->env->defer_sync && vm->rec->proc.pid == 0;
  gboolean sync = !batched && !vm->unsynced_save;
  vm->unsynced_save = FALSE;
  if (vmlet_vm_record_save(vm->rec, vm->env->node->state_dir, sync, &error)) {
    g_clear_pointer(&vm->save_error, g_free);
    vm->env->sync_pending = vm->env->sync_pending || batched;
  } else {
    vm_set_str(&vm->save_error, error->message);
  }
}

void vm_sync_attachments(VmletVm *vm)
{
  g_autofree char *why = NULL;
  if (vm_deleting(vm))
    why = g_strdup_printf("VirtualMachine \"%s\" is being deleted", vm->name);
  else if (vm->phase != VM_PHASE_RUNNING)
    why = g_strdup_printf("VirtualMachine \"%s\" is %s; the device is attached when it runs",
                          vm->name, phase_names[vm->phase]);
  vmlet_attach_ctl_set_vm(vm->hot, vm->spec, why);
}

void vm_set_phase(VmletVm *vm, VmPhase phase)
{
  /* The same phase is no transition, unless the record lags behind (adopted from an older
   * write): then the record catches up. */
  if (vm->phase == phase && g_str_equal(vm->rec->phase, phase_names[phase]))
    return;
  if (vm->phase != phase && !vm_phase_can_move(vm->phase, phase)) {
    g_critical("%s/%s: refused phase transition %s -> %s", vm->namespace, vm->name,
               phase_names[vm->phase], phase_names[phase]);
    return;
  }
  vm_restore_phase(vm, phase);
}

void vm_restore_phase(VmletVm *vm, VmPhase phase)
{
  if (vm->phase == phase && g_str_equal(vm->rec->phase, phase_names[phase]))
    return;
  vm->phase = phase;
  vm_sync_attachments(vm);
  vmlet_vm_record_transition(vm->rec, phase_names[phase], g_get_real_time());
  vm_save(vm);
  vm_changed(vm);
}

void vm_set_job(VmletVm *vm, VmJobKind kind, VmStopIntent intent, gboolean force)
{
  vm->job = (VmJob){.kind = kind, .intent = intent, .force = force};
  gboolean stop = kind == VM_JOB_STOP;
  vm_set_str(&vm->rec->job, kind == VM_JOB_NONE ? NULL : vm_job_kind_name(kind));
  vm_set_str(&vm->rec->job_intent, stop ? vm_stop_intent_name(intent) : NULL);
  vm->rec->job_force = stop && force;
}
