/* The migration commands of a QEMU's monitor (QEMU 7.2), typed like those of monitor.h:
 * TLS credentials and the authorisation list, capabilities and parameters, the migration
 * itself on both ends, and the NBD server, exports and mirrors that copy a local disk.
 * Commands whose reply is {} finish with vmlet_monitor_finish().
 *
 * Facts these rest on (tried here, QEMU 7.2, loopback):
 * - tls-creds-x509 reads ca-cert.pem and server-*.pem / client-*.pem from its dir and
 *   checks its own certificate against the CA when it is created: a wrong dir fails there.
 * - tls-authz compares the client's distinguished name as GnuTLS prints it in the
 *   certificate's order ("O=vmlet,CN=hv-1"); "CN=hv-1,O=vmlet" is refused.
 * - a destination started with -S stays paused after the migration completes, until cont;
 *   a source in postmigrate can be resumed with cont.
 * - max-bandwidth defaults to 32 MiB/s: always set it. */
#pragma once

#include "monitor.h"

/* tls-creds-x509 {id, dir, endpoint: server or client, verify-peer: true}. */
void vmlet_monitor_add_tls_creds(VmletMonitor *mon, const char *id, const char *dir,
                                 gboolean server, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
/* authz-list {id, policy: deny, rules: [{match: dn, policy: allow, format: exact}]}. */
void vmlet_monitor_add_authz(VmletMonitor *mon, const char *id, const char *dn,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data);
void vmlet_monitor_object_del(VmletMonitor *mon, const char *id, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data);

typedef struct {
  const char *name; /* "events", "pause-before-switchover", "auto-converge", ... */
  gboolean on;
} VmletMigrationCap;

void vmlet_monitor_migrate_set_capabilities(VmletMonitor *mon, const VmletMigrationCap *caps,
                                            guint n_caps, GCancellable *cancellable,
                                            GAsyncReadyCallback callback, gpointer user_data);

/* Members left NULL or negative are not sent. */
typedef struct {
  const char *tls_creds, *tls_hostname, *tls_authz;
  gint64 max_bandwidth;       /* bytes per second */
  gint64 downtime_limit;      /* ms */
  gint64 multifd_channels;
  gint64 cpu_throttle_initial, cpu_throttle_increment; /* percent */
} VmletMigrationParams;
#define VMLET_MIGRATION_PARAMS_INIT {NULL, NULL, NULL, -1, -1, -1, -1, -1}

void vmlet_monitor_migrate_set_parameters(VmletMonitor *mon, const VmletMigrationParams *p,
                                          GCancellable *cancellable,
                                          GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_migrate(VmletMonitor *mon, const char *uri, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_migrate_incoming(VmletMonitor *mon, const char *uri,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data);
/* Past pre-switchover (capability pause-before-switchover): the switch-over proper. */
void vmlet_monitor_migrate_continue(VmletMonitor *mon, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_migrate_cancel(VmletMonitor *mon, GCancellable *cancellable,
                                  GAsyncReadyCallback callback, gpointer user_data);

typedef struct {
  VmletMigrationStatus status;
  guint64 ram_transferred, ram_remaining, ram_total; /* bytes */
  guint64 dirty_pages_rate;                          /* pages per second */
  guint64 dirty_sync_count;                          /* iterations over guest RAM */
  double mbps;
  gint64 total_time_ms, downtime_ms, expected_downtime_ms, setup_time_ms;
  gint64 cpu_throttle_percentage;
  char *error_desc; /* NULL unless failed */
} VmletMigrationInfo;

void vmlet_migration_info_clear(VmletMigrationInfo *info);
void vmlet_monitor_query_migrate(VmletMonitor *mon, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_monitor_query_migrate_finish(VmletMonitor *mon, GAsyncResult *result,
                                            VmletMigrationInfo *out, GError **error);

/* nbd-server-start {addr: inet host:port, tls-creds, tls-authz}. */
void vmlet_monitor_nbd_server_start(VmletMonitor *mon, const char *host, guint port,
                                    const char *tls_creds, const char *tls_authz,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data);
void vmlet_monitor_nbd_server_stop(VmletMonitor *mon, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data);
/* block-export-add {type: nbd, id, node-name, name: node, writable}. */
void vmlet_monitor_block_export_add(VmletMonitor *mon, const char *id, const char *node,
                                    gboolean writable, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
/* blockdev-mirror {job-id, device, target, sync: full, auto-dismiss: false}: a concluded
 * job stays until job-dismiss, so its end is never missed (and never left behind: DVP had
 * to patch libvirt for undismissed jobs that blocked later migrations). */
void vmlet_monitor_blockdev_mirror(VmletMonitor *mon, const char *job_id, const char *device,
                                   const char *target, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data);
/* block-job-cancel: force FALSE completes a READY mirror as a consistent copy. */
void vmlet_monitor_block_job_cancel(VmletMonitor *mon, const char *job_id, gboolean force,
                                    GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data);
void vmlet_monitor_job_dismiss(VmletMonitor *mon, const char *job_id,
                               GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data);

typedef struct {
  char *id;
  char *status; /* QEMU's JobStatus: "running", "ready", "concluded", ... */
  guint64 offset, len;
  gboolean ready;
} VmletBlockJob;

void vmlet_block_job_free(VmletBlockJob *job);
void vmlet_monitor_query_block_jobs(VmletMonitor *mon, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
/* VmletBlockJob *, at most VMLET_MONITOR_MAX_ENTRIES. */
GPtrArray *vmlet_monitor_query_block_jobs_finish(VmletMonitor *mon, GAsyncResult *result,
                                                 GError **error);

/* yank: unblocks a migration stream (node NULL) or an NBD client node stuck on a dead
 * peer, so the commands waiting on it fail instead of hanging. */
void vmlet_monitor_yank(VmletMonitor *mon, const char *node, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data);
