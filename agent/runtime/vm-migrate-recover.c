/* A restarted vmletd's unfinished migrations, one journal each (journal.h), settled by the
 * rule that keeps one running copy:
 *
 *   end          journal step               QEMU found          what recovery does
 *   source       before Committing, or      running or paused   undo QEMU's side, resume it
 *                Aborting                                       unless its user had paused
 *                                                               it; tell the peer: Aborted
 *                                           gone                Aborted; the run policy
 *                                                               decides, as after a crash
 *                Committing                 either              send the commit again: 200
 *                                                               hands over, "Aborted"
 *                                                               resumes; anything else, or
 *                                                               no answer, waits paused
 *                Committed                  either              hand over: QEMU quit, the
 *                                                               VM forgotten here
 *   destination  before Committed, or       either              end the incoming QEMU,
 *                Aborting                                       remove the images made for
 *                                                               it: Aborted
 *                Committed                  paused              resume it, own the VM
 *                                           gone                own the VM; the run policy
 *                                                               starts it from the copy
 *
 * Before the first reload a VM with a journal is claimed (the migration job rebuilt, so
 * the reload neither starts nor deletes it); after it, recovery acts: at once for a VM
 * without QEMU, else when the adopted QEMU has answered query-status. */
#include "vm-migrate-in.h"
#include "vm-migrate-out.h"

static const char restarted[] = "vmletd restarted during the migration";

void vm_migrate_recover_claim(VmletVm *vm, VmletMigJournal *j)
{
  vm->recovering = TRUE;
  if (j->role == VMLET_MIG_SOURCE)
    mig_out_rebuild(vm, j);
  else
    mig_in_rebuild(vm, j);
}

/* ---- the source ---- */

static void source_act(VmletVm *vm)
{
  VmMigOut *m = vm->mig_out;
  VmletPeer *peer = vmlet_migrations_peer(vm->env->migrations, m->journal->peer);
  m->peer = peer ? vmlet_peer_ref(peer) : NULL;
  mig_out_recovered_disks(m);
  switch (m->journal->step) {
  case VMLET_MIG_COMMITTING:
    mig_out_commit(m);
    return;
  case VMLET_MIG_COMMITTED:
  case VMLET_MIG_FINISHED:
    m->step = MIG_STEP_HAND_OVER;
    mig_out_hand_over(m);
    return;
  case VMLET_MIG_PREPARING:
  case VMLET_MIG_PREPARED:
  case VMLET_MIG_SWITCHOVER:
  case VMLET_MIG_COMPLETED:
  case VMLET_MIG_ABORTING:
  case VMLET_MIG_ABORTED:
    break;
  }
  /* No commit was sent: the destination cannot have resumed, so this copy resumes. */
  mig_out_fail(m, "Aborted", restarted);
}

/* ---- the destination ---- */

static void destination_act(VmletVm *vm)
{
  VmMigIn *m = vm->mig_in;
  if (!m->committed) {
    /* Never resumed here: nothing runs here, the source resumes on "Aborted". */
    mig_in_abort(m, restarted);
    return;
  }
  if (!vm->qemu) {
    g_autoptr(GError) error = NULL;
    if (!mig_in_finish(m, &error))
      vm_note(vm, LOG_ERR, "owning the VM after the commit: %s", error->message);
    return;
  }
  /* As if the commit came again: resume, own the VM. */
  mig_in_commit(m, m->journal->generation, NULL);
}

void vm_migrate_recover_act(VmletVm *vm)
{
  if (!vm->recovering)
    return;
  vm->recovering = FALSE;
  if (vm->mig_out)
    source_act(vm);
  else if (vm->mig_in)
    destination_act(vm);
}
