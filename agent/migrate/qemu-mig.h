/* The QMP side of a live migration, one end at a time (as hotplug.c is for one device):
 * what each end sends, in which order, and how it is undone. The protocol between the two
 * vmletd, the journal and the decisions belong to the caller (agent/runtime/vm-migrate*.c).
 *
 * Destination, before the source starts:   tls-creds-x509 (server) + authz-list naming the
 *   source's client DN; capabilities and parameters as the source's; for each local disk
 *   nbd-server-start (TLS, the same authz) + block-export-add of its format node;
 *   migrate-incoming on the stream port.
 * Source:  tls-creds-x509 (client); the same capabilities; parameters (tls-hostname = the
 *   destination's node name, bandwidth, downtime); for each local disk an NBD client node
 *   and blockdev-mirror (sync full), all READY before `migrate`; at pre-switchover each
 *   mirror completed (block-job-cancel, force false: a READY mirror then ends as a
 *   consistent copy), dismissed, its NBD node deleted, then migrate-continue.
 * Destination at commit: nbd-server-stop before cont (the image lock), cont.
 * Undo, on either end: every step above removed again; concluded jobs are always dismissed
 * and NBD nodes deleted, so no later migration is blocked by leftovers. */
#pragma once

#include <gio/gio.h>

#define VMLET_MIG_NBD_OPEN_TIMEOUT_S 10

#include "monitor-migrate.h"
#include "plan.h"

typedef struct {
  const char *tls_dir;        /* QEMU's copy of the credentials (tls.h) */
  const char *peer_name;      /* the other end's node name */
  const char *peer_dn;        /* destination: the source's client DN, for tls-authz */
  gboolean auto_converge;     /* from the VM's liveMigrationPolicy */
  guint multifd_channels;     /* 0: one stream */
  guint64 bandwidth;          /* bytes per second */
  guint downtime_ms;
} VmletMigSetup;

/* The ids vmlet gives its QEMU objects and jobs, the same on both ends. */
#define VMLET_MIG_TLS_ID "vmlet-mig-tls"
#define VMLET_MIG_AUTHZ_ID "vmlet-mig-authz"

/* Both ends: credentials (and on the destination the authorisation), capabilities,
 * parameters. */
void vmlet_mig_setup_async(VmletMonitor *mon, gboolean destination, const VmletMigSetup *s,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data);
gboolean vmlet_mig_setup_finish(GAsyncResult *result, GError **error);

/* Destination: the NBD server and an export per local disk (nbd_port 0 and disks empty:
 * none), then migrate-incoming tcp:address:port. */
void vmlet_mig_listen_async(VmletMonitor *mon, const char *address, guint port, guint nbd_port,
                            GPtrArray *disks, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_mig_listen_finish(GAsyncResult *result, GError **error);

/* Source: an NBD node on the destination's export and a mirror into it per local disk
 * (VmPlanDisk *); completes once every mirror is READY. */
void vmlet_mig_mirror_async(VmletMonitor *mon, const char *peer_address, guint nbd_port,
                            const char *peer_name, GPtrArray *disks, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_mig_mirror_finish(GAsyncResult *result, GError **error);

/* Source at pre-switchover: each mirror completed (concluded: the copy is exact). Only
 * that, since the guest is paused until migrate-continue. */
void vmlet_mig_mirror_complete_async(VmletMonitor *mon, GPtrArray *disks,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data);
gboolean vmlet_mig_mirror_complete_finish(GAsyncResult *result, GError **error);
/* ... and once the migration completed: the concluded jobs dismissed, the NBD nodes
 * deleted (measured: doing it inside the pause cost the guest ~100 ms more). Tolerant:
 * what is already gone is no error; callback may be NULL. */
void vmlet_mig_mirror_tidy_async(VmletMonitor *mon, GPtrArray *disks,
                                 GCancellable *cancellable, GAsyncReadyCallback callback,
                                 gpointer user_data);

/* Either end, after a failure: migrate_cancel (source) and yank, mirrors cancelled and
 * dismissed, NBD nodes deleted, the NBD server stopped, the TLS objects deleted. Every step
 * is tried whatever the others do; what is already gone is no error. */
void vmlet_mig_cleanup_async(VmletMonitor *mon, gboolean destination, GPtrArray *disks,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
void vmlet_mig_cleanup_finish(GAsyncResult *result);

/* Destination at commit: nbd-server-stop, then cont. */
void vmlet_mig_resume_async(VmletMonitor *mon, gboolean nbd, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_mig_resume_finish(GAsyncResult *result, GError **error);

/* The names both ends give a disk's migration objects: the NBD export is the destination's
 * format node (qemu-devices.h); the source's NBD client node and mirror job. */
char *vmlet_mig_target_node(const VmPlanDisk *disk);
char *vmlet_mig_job_id(const VmPlanDisk *disk);
