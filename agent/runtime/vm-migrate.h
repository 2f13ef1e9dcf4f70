/* A VM's live migration, private to agent/runtime/vm*.c and manager-incoming.c.
 *
 *   vm-migrate.c      what both ends share: the VM's disks as the peers describe them,
 *                     status.migrationState, the MIGRATABLE answer
 *   vm-migrate-out.c  the source: choose a target, prepare it, set QEMU up, mirror local
 *                     disks, migrate, switch over, commit, hand the VM over
 *   vm-migrate-in.c   the destination: prepare (disks, incoming QEMU, TLS, NBD), commit
 *                     (resume, own the VM), abort
 *   vm-migrate-recover.c  a restarted vmletd's journals, decided with the peer
 *
 * The rule that keeps one running copy: the destination resumes only when the source
 * commits, and the source commits only once its QEMU has sent everything and stopped; from
 * the commit on the source never resumes. Before it, any failure resumes the source. */
#pragma once

#include "journal.h"
#include "migrations.h"
#include "vm-private.h"

/* What status.migrationState says (DVP): the last migration of this VM. */
typedef struct _VmMigrationState {
  gint64 start_us, end_us; /* 0: not yet */
  char *source, *target;   /* node names */
  char *result;            /* NULL while it runs; "Succeeded" or "Failed" */
  char *reason;            /* why it failed */
} VmMigrationState;

void vm_migration_state_clear(VmMigrationState *st);
JsonNode *vm_migration_state_json(const VmMigrationState *st);

/* A disk of the VM as the two ends talk about it. */
typedef struct {
  VmBlockKind kind;
  char *name;
  char *path;            /* where it is on this end */
  VmletImageFormat format;
  gboolean read_only;
  guint64 virtual_size;  /* bytes, as the guest sees it */
  char *fingerprint;     /* sha256 of the size and the first 64 KiB (vm-migrate.c) */
  VmPlanDisk *plan;      /* the source's plan entry (node names, device id) */
  gboolean shared;       /* the same file on both ends: not mirrored */
  gboolean created;      /* destination: made for this migration (removed on abort) */
} VmMigDisk;

void vm_mig_disk_free(gpointer disk);
/* The VM's disks (blockDeviceRefs and attachments) as QEMU has them from plan. */
GPtrArray *vm_mig_disks_of(const VmPlan *plan, GError **error);
/* Virtual size and fingerprint of the file at path, bounded reads. */
gboolean vm_mig_disk_probe(const char *path, VmletImageFormat format, guint64 *size,
                           char **fingerprint, GError **error);

/* QEMU's TLS credentials for migration id (the server end on a destination), installed in
 * <run-dir>/migration-tls/ID, readable by the VM's QEMU only; its path, or NULL. */
char *vm_mig_tls_for_qemu(VmletVm *vm, const char *id, gboolean server, GError **error);

/* Shared storage, told apart from a copy at the same path: for the length of the prepare,
 * the source leaves .vmlet-shared-<migration id> holding a random token beside each disk;
 * the destination finds that token there only when the directory is the same storage. A
 * copy with the same header (a disk the VM left behind on an earlier migration) has no
 * marker, so it is never taken for the VM's disk. */
char *vm_mig_marker_path(const char *disk_path, const char *id);
gboolean vm_mig_marker_matches(const char *disk_path, const char *id, const char *token);

/* The object a disk announced by the source (kind, name in namespace ns, the source's
 * manifest) is on this node (vm-migrate-place.c): this node's own, or the manifest's (added
 * to inv) with its spec.local.path only when the disk is a written one and that directory
 * holds the source's marker (id, token); else without it, at this node's default location
 * (*note then says so). *keep: the manifest as used, to journal and later write as the
 * drop-in (NULL for this node's own object). NULL (VMLET_MIG_ERROR_INVALID) when the
 * manifest is not one object of that kind, name and namespace. */
VmletBlockObject *vm_mig_place(VmletInventory *inv, VmBlockKind kind, const char *ns,
                               const char *name, JsonNode *manifest, const char *id,
                               const char *token, JsonNode **keep, char **note,
                               GError **error);

/* The VirtualMachine as a drop-in document (metadata, spec with defaults). */
JsonNode *vm_manifest(VmletVm *vm);

/* Why the VM cannot migrate now, or NULL when it can (for the Migratable condition). */
char *vm_migratable(VmletVm *vm);

/* ---- the source (vm-migrate-out*.c) ---- */
typedef struct _VmMigOut VmMigOut;

/* Begins the migration an Evict or Migrate operation (op_uid) asks for: selector narrows
 * the targets (NULL: any peer). Returns why it cannot begin, or NULL. */
char *vm_migrate_out_begin(VmletVm *vm, const char *op_uid, GHashTable *selector,
                           gboolean force);
/* Cancels it unless the destination already owns the VM; the VM goes on running here. */
void vm_migrate_out_cancel(VmletVm *vm, const char *reason);
/* QEMU exited during the migration: before the commit a crash (the destination is told to
 * abort), after it the end of the hand-over. Returns TRUE when the VM is gone. */
gboolean vm_migrate_out_exited(VmletVm *vm);
/* 0-100 as DVP counts (2-4 preparing the target, 10-90 copying, 91 source suspended, 92
 * target resumed, 100 done), or -1 when no migration runs. */
gint vm_migrate_out_progress(VmletVm *vm);
/* The answer to the peer's GET of this migration. */
JsonNode *vm_migrate_out_describe(VmletVm *vm);

/* ---- a restarted vmletd (vm-migrate-recover.c) ---- */

/* Takes j, a journal not at an outcome: the job is rebuilt, before the first reload. */
void vm_migrate_recover_claim(VmletVm *vm, VmletMigJournal *j);
/* Settles it, after the first reload: at once without QEMU, else once the adopted QEMU has
 * answered query-status (vm-start.c). */
void vm_migrate_recover_act(VmletVm *vm);

/* ---- the destination ---- */

typedef struct _VmMigIn VmMigIn;
/* The incoming QEMU's monitor is up: credentials, capabilities, NBD, migrate-incoming. */
void vm_migrate_in_ready(VmletVm *vm);
void vm_migrate_in_free(VmletVm *vm);
void vm_migrate_in_cancel(VmletVm *vm, const char *reason);
gboolean vm_migrate_in_exited(VmletVm *vm);
JsonNode *vm_migrate_in_describe(VmletVm *vm);

/* The VM's migration state, freed with the VM. */
void vm_migration_free(VmletVm *vm);
/* The migration state's begin, target, end (vm-migrate.c). */
void mig_state_begin(VmletVm *vm, const char *source, const char *target);
void mig_state_target(VmletVm *vm, const char *target);
void mig_state_end(VmletVm *vm, const char *result, const char *reason);
