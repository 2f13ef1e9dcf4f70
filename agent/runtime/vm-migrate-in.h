/* The destination's job, shared by vm-migrate-in.c (prepare: the request checked, disks
 * placed, the incoming QEMU started) and vm-migrate-in-end.c (its QEMU set up, then commit
 * or abort). Private to those files and manager-migrate.c. */
#pragma once

#include "mig-error.h"
#include "vm-migrate.h"

typedef struct _VmMigIn {
  VmletVm *vm;              /* not owned */
  VmletMigJournal *journal;
  char *source;             /* the source's node name */
  char *source_dn;          /* its client certificate's DN, for tls-authz */
  GPtrArray *disks;         /* VmMigDisk *: paths on this node, shared or created */
  GPtrArray *exports;       /* VmPlanDisk * exported over NBD (the local copies) */
  guint ports[2];           /* [0] the stream, [1] NBD (0: none) */
  guint n_ports;
  gboolean auto_converge;
  guint multifd_channels;
  char *tls_dir;
  char *marker_token;       /* the source's shared-storage marker (vm-migrate.h) */
  GTask *prepare;           /* answered once QEMU listens */
  GTask *commit;            /* answered once the VM runs here */
  gint64 last_contact_us;   /* the source's last call */
  guint watchdog;
  GCancellable *cancel;     /* every call of the job: cancelled when it is freed */
  gboolean asking, committed, ended;
  gboolean commit_busy;     /* QEMU is being resumed */
  gboolean resumed;         /* ... and runs: a repeated commit is answered at once */
  guint finish_retry;       /* the drop-ins could not be written: tried again */
  gboolean recovered;       /* rebuilt from the journal by a restarted vmletd: no slot */
} VmMigIn;

/* vm-migrate-in.c */
/* Checks a prepare request, places the disks, starts the incoming QEMU; task is answered
 * once QEMU listens (the ports), or with the refusal (VMLET_MIG_ERROR). */
void mig_in_prepare(VmletVm *vm, JsonObject *request, const char *source,
                    const char *source_dn, GTask *task);
/* Undoes a prepare: the QEMU quit, the images this migration created removed, the VM
 * forgotten once QEMU is gone. */
void mig_in_abort(VmMigIn *m, const char *why);
/* The job again from its journal (taken), after vmletd restarted: registered, holding the
 * VM's job slot (so no reload deletes or starts the VM) but no migration slot. */
VmMigIn *mig_in_rebuild(VmletVm *vm, VmletMigJournal *j);
/* The job is over (its outcome journaled): ports, slot and registration given back. */
void mig_in_release(VmMigIn *m);
void mig_in_free(VmMigIn *m);
/* A call's callback asks this before it touches m: mig_in_free() cancels m->cancel. */
static inline gboolean mig_in_gone(const GError *error)
{
  return g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

/* Sets a VMLET_MIG_ERROR code with the message; FALSE, so that a check can return it. */
gboolean mig_in_refuse(GError **error, VmletMigError code, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* vm-migrate-in-disks.c */
/* One disk of the prepare request (d, from the untrusted source) placed on this node and
 * added to m->disks; an image made for it is recorded in m->journal->created. */
gboolean mig_in_take_disk(VmMigIn *m, JsonObject *d, GError **error);

/* vm-migrate-in-end.c */
/* The source's commit (task: its answer), or this node's own when the source says it has
 * committed (task NULL). */
void mig_in_commit(VmMigIn *m, guint64 generation, GTask *task);
/* The VM is this node's: its drop-ins written, the outcome journaled, the job released.
 * FALSE (error set, the job kept) when the drop-ins cannot be written. */
gboolean mig_in_finish(VmMigIn *m, GError **error);
/* Writes the journal's manifests as this node's drop-ins; the VM's path in *vm_path. */
gboolean mig_in_own(const VmletNode *node, const VmletMigJournal *j, char **vm_path,
                    GError **error);
JsonNode *mig_in_describe(VmMigIn *m);
