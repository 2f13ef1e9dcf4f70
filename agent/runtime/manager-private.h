/* The manager's insides, shared by its files:
 *
 *   manager.c          the object, the VM table, reloads and directory watches
 *   manager-dropins.c  vms.d: drop-ins read (again only when changed) into VMs
 *   manager-attach.c   attachments across VMs: read-write disks held once, status, events
 *   manager-migrate.c  migrations: the peer server's requests, incoming VMs
 *   manager-ops.c      operations across VMs, and those of VMs gone from this node
 *   manager-drain.c    maintenance: cordon, drain (evictions), uncordon
 *   manager-node.c     the node object (GET /node), a drain's dry run, the STATUS= line
 *
 * Nothing outside agent/runtime/manager*.c includes this header. */
#pragma once

#include <sys/stat.h>
#include <time.h>

#include "cordon.h"
#include "manager.h"

/* A vms.d drop-in as last read, reused while the file is unchanged: with many VMs, a change
 * to one file must not parse them all again (1000 drop-ins: tens of ms of a blocked loop,
 * and heap churn that stays as RSS). Keyed on what any change to the file changes. */
typedef struct {
  dev_t dev;
  ino_t ino;
  off_t size;
  mode_t mode;
  uid_t uid;
  struct timespec mtime, ctime;
  GPtrArray *objs;     /* VmletObject *; NULL when the file failed to load */
  GPtrArray *warnings; /* char * */
  char *error;
} Dropin;

struct _VmletManager {
  GObject parent;
  VmletVmEnv env;
  GHashTable *vms;      /* "namespace/name" -> VmletVm * */
  GHashTable *dropins;  /* path -> Dropin * */
  GPtrArray *monitors;  /* GFileMonitor * */
  GPtrArray *problems;  /* char *: this reload's, then setup_problems */
  GPtrArray *setup_problems; /* char *: found at start (records, directories), kept */
  guint reload_timer;
  GHashTable *att_shown; /* "namespace/name" -> the attachment's JSON as last announced */
  GHashTable *att_seen;  /* "namespace/name" -> gint64 *: first seen, for those with no VM */
  gboolean reloading;    /* VMs and attachments are out of step until the reload ends */
  GHashTable *att_pending; /* "namespace/name" -> VmletAttachment * whose drop-in is being
                            * written: a reload meanwhile must not take it for deleted */
  GQueue *departed_ops;    /* JsonNode *: operations of VMs no longer here, oldest first */
  VmletCordon *cordon;     /* NULL: not cordoned (env.cordoned says the same to the VMs) */
  char *cordon_problem;    /* why cordon.json could not be written last time */
  guint drain_timer;
};

/* A VM read from vms.d in this reload, with the warnings of its part of the drop-in. */
typedef struct {
  VmletVm *vm;
  VmSpec *spec;
  GPtrArray *warnings; /* char * */
} LoadedVm;

/* manager.c */
char *mgr_key_for(const char *ns, const char *name);
VmletVm *mgr_ensure_vm(VmletManager *mgr, const char *ns, const char *name);
void mgr_emit_attachment_changed(VmletManager *mgr, JsonNode *attachment);
void mgr_emit_attachment_removed(VmletManager *mgr, const char *ns, const char *name);
void mgr_emit_node_changed(VmletManager *mgr);
void mgr_emit_node_note(VmletManager *mgr, int priority, const char *text);

/* manager-dropins.c */
void mgr_dropin_free(gpointer dropin);
void mgr_loaded_vm_free(gpointer loaded);
/* Reads vms.d into VMs: seen gets "ns/name" -> file of each VM defined, loaded a LoadedVm
 * for each VM with a usable spec. */
void mgr_load_vms(VmletManager *mgr, GHashTable *seen, GPtrArray *loaded);

/* manager-migrate.c */
/* The unfinished migrations' journals, each given to its VM, before the first reload. */
void mgr_migrations_claim(VmletManager *mgr);
/* After it: recovery acts for those whose VM has no QEMU. */
void mgr_migrations_act(VmletManager *mgr);

/* manager-ops.c */
/* Keeps the operations of vm, which is leaving the node (deleted, migrated away). */
void mgr_keep_departed_ops(VmletManager *mgr, VmletVm *vm);

/* manager-attach.c */
/* Hands every VM the attachments that name it (an empty list detaches the rest). */
void mgr_distribute_attachments(VmletManager *mgr, gboolean retry);
/* Announces every attachment whose JSON changed, and those that are gone. */
void mgr_refresh_attachments(VmletManager *mgr);
void mgr_add_to_inventory(VmletManager *mgr, VmletAttachment *att, const char *source);

/* manager-drain.c */
/* Before the first reload: a cordoned node starts nothing. */
void mgr_cordon_load(VmletManager *mgr);
/* After it (and after the migrations' recovery has claimed its journals): a drain that
 * was under way goes on. */
void mgr_cordon_resume(VmletManager *mgr);
