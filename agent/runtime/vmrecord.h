/* The persistent runtime record of one VM: what a restarted vmletd needs to re-adopt a
 * running QEMU instead of starting another one, and to keep status continuous.
 * Stored as <state-dir>/vms/<namespace>.<name>.json, written atomically, mode 0600. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "process.h"

/* The record's layout: 1 had no "version" member; 2 adds the job slot and the machine
 * type. A record of a newer layout is refused by name, never half-read. */
#define VMLET_VM_RECORD_VERSION 2

typedef struct {
  char *namespace;
  char *name;
  char *phase;            /* the phase when last written */
  VmletProcId proc;       /* pid 0: no QEMU */
  char *qmp_socket;
  char *runtime_dir;
  JsonNode *started_spec; /* .spec the running QEMU was started with; NULL when none */
  gboolean stopped_manually;
  guint restarts;         /* automatic restarts after failures */
  JsonNode *transitions;  /* status.stats.phasesTransitions: [{phase, timestamp}] */
  gint64 created_us;      /* wall clock, first seen */
  gint64 launch_us;       /* launchTimeDuration of the last start, 0 when unknown */
  char *provisioning_digest; /* sha256 of the Secret payload the seed was built from */
  char *cgroup;           /* where QEMU was placed (cgroup.h location); NULL when none */
  JsonNode *hotplugged;   /* attachments' devices in the running QEMU (attachctl.c); NULL: none */
  char *job;              /* the VM's job slot (vm-job.h): kind, and a stop's intent */
  char *job_intent;
  gboolean job_force;
  /* The machine type QEMU resolved the class's alias to ("q35" -> "pc-q35-7.2"), kept so
   * that later starts and a migration destination run the same one. */
  char *machine_alias;
  char *machine;
  /* How many times the VM changed hands by migration: the node with the higher generation
   * owns it (vm-migrate.h). */
  guint64 generation;
} VmletVmRecord;

VmletVmRecord *vmlet_vm_record_new(const char *namespace, const char *name);
void vmlet_vm_record_free(VmletVmRecord *rec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletVmRecord, vmlet_vm_record_free)

char *vmlet_vm_record_path(const char *state_dir, const char *namespace, const char *name);
/* sync FALSE: without fsync (vmlet_write_file_atomic_nosync); the caller syncs later. */
gboolean vmlet_vm_record_save(const VmletVmRecord *rec, const char *state_dir, gboolean sync,
                              GError **error);
/* Loads one record; a damaged record is an error naming the file, never a crash. */
VmletVmRecord *vmlet_vm_record_load(const char *path, GError **error);
/* Paths of every record under <state-dir>/vms, sorted. */
GPtrArray *vmlet_vm_record_list(const char *state_dir);
gboolean vmlet_vm_record_delete(const char *state_dir, const char *namespace, const char *name,
                                GError **error);
/* Appends a phase transition (bounded: the oldest are dropped past 32). */
void vmlet_vm_record_transition(VmletVmRecord *rec, const char *phase, gint64 wall_us);

/* A VM migrated away: <state-dir>/moved/<ns>.<name>.json names where to and at which
 * generation, so this node never runs it again from a drop-in it could not put aside. */
gboolean vmlet_vm_tombstone_write(const char *state_dir, const char *namespace,
                                  const char *name, const char *target, guint64 generation,
                                  GError **error);
/* The tombstone's text for a VM ("moved to hv-2 ..."), or NULL when there is none. */
char *vmlet_vm_tombstone_read(const char *state_dir, const char *namespace, const char *name);
void vmlet_vm_tombstone_remove(const char *state_dir, const char *namespace, const char *name);
