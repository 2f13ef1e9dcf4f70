/* The journal of one migration, kept by each end: <state-dir>/migrations/<id>.json,
 * written atomically and synced *before* the step it names is acted on, so that a vmletd
 * restarted at any point knows what it had begun, and with a question to its peer, how it
 * ended (vm-migrate-recover.c applies the rules).
 *
 * The steps, in order (each end uses those of its role):
 *
 *   source       PREPARING   asking the destination to prepare
 *                PREPARED    the destination's QEMU waits; mirrors and the migration start
 *                SWITCHOVER  QEMU reached pre-switchover: vCPUs stopped, mirrors completing
 *                COMPLETED   QEMU finished: the source is paused (postmigrate) with nothing
 *                            left to send; from here only the destination may run the VM
 *                COMMITTING  commit sent: the source never resumes from here on
 *                COMMITTED   the destination runs the VM: the source's QEMU goes
 *   destination  PREPARING   starting the incoming QEMU
 *                PREPARED    waiting for the stream and then for the commit
 *                COMMITTED   the commit arrived: resume, own the VM
 *   either       ABORTING    undoing: the source resumes its QEMU, the destination ends its own
 *
 * and the two outcomes, kept OUTCOME_KEEP_DAYS (7) after the migration ended so that a peer
 * which lost contact (a cut link, a restart) still gets a definite answer to "did it
 * commit?" — without one, a source at COMMITTING waits paused rather than guess:
 *
 *   either       FINISHED    committed: the destination owns the VM, the source forgot it
 *                ABORTED     undone: the source runs the VM, the destination has nothing
 *
 * The generation is the VM's after this migration: the source's plus one. It is how two
 * nodes that both remember a VM tell who owns it. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

typedef enum {
  VMLET_MIG_SOURCE,
  VMLET_MIG_DESTINATION,
} VmletMigRole;

typedef enum {
  VMLET_MIG_PREPARING,
  VMLET_MIG_PREPARED,
  VMLET_MIG_SWITCHOVER,
  VMLET_MIG_COMPLETED,
  VMLET_MIG_COMMITTING,
  VMLET_MIG_COMMITTED,
  VMLET_MIG_ABORTING,
  VMLET_MIG_FINISHED,
  VMLET_MIG_ABORTED,
} VmletMigStep;

typedef struct {
  char *id;              /* a UUID, the same on both ends */
  VmletMigRole role;
  VmletMigStep step;
  char *namespace, *name;
  char *peer;            /* the other end's node name */
  guint64 generation;    /* the VM's generation once this migration commits */
  char *operation;       /* the VirtualMachineOperation that asked for it, if any */
  char *reason;          /* why it is aborting */
  GPtrArray *created;    /* destination: images made for this migration (char *), removed
                          * if it does not commit; source: the disks copied, set aside
                          * once it commits (they are stale copies then) */
  gboolean paused;       /* source: the user had paused the VM; it stays paused if undone */
  JsonNode *manifests;   /* destination: the objects its drop-ins get once the VM is owned
                          * (an array: the VirtualMachine, then disks this node lacked) */
  gint64 started_us, updated_us; /* wall clock */
} VmletMigJournal;

VmletMigJournal *vmlet_mig_journal_new(const char *id, VmletMigRole role, const char *ns,
                                       const char *name, const char *peer,
                                       guint64 generation);
void vmlet_mig_journal_free(VmletMigJournal *j);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletMigJournal, vmlet_mig_journal_free)

/* Moves to step and saves, synced; FALSE when it could not be written (then the step must
 * not be acted on). */
gboolean vmlet_mig_journal_step(VmletMigJournal *j, const char *state_dir, VmletMigStep step,
                                GError **error);
gboolean vmlet_mig_journal_save(const VmletMigJournal *j, const char *state_dir,
                                GError **error);
VmletMigJournal *vmlet_mig_journal_load(const char *path, GError **error);
/* Paths of every journal under <state-dir>/migrations, sorted. */
GPtrArray *vmlet_mig_journal_list(const char *state_dir);
gboolean vmlet_mig_journal_delete(const char *state_dir, const char *id, GError **error);

/* A journal, by id, or NULL (error set) when there is none or it does not load. */
VmletMigJournal *vmlet_mig_journal_find(const char *state_dir, const char *id, GError **error);
/* Removes the outcomes (FINISHED, ABORTED) last updated before before_us (wall clock). */
void vmlet_mig_journal_prune(const char *state_dir, gint64 before_us);

const char *vmlet_mig_step_name(VmletMigStep step);
/* FINISHED or ABORTED: nothing is left to do, only to answer. */
gboolean vmlet_mig_step_is_outcome(VmletMigStep step);
const char *vmlet_mig_role_name(VmletMigRole role);
/* A migration id as vmlet makes them (a lowercase UUID): what may name a journal file. */
gboolean vmlet_mig_id_valid(const char *id);
