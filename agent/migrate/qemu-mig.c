#include "qemu-mig-private.h"

#include <string.h>

#include "qemu-devices.h"
#include "vmlet-error.h"

gboolean vmlet_mig_setup_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

gboolean vmlet_mig_listen_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

gboolean vmlet_mig_mirror_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

gboolean vmlet_mig_mirror_complete_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

gboolean vmlet_mig_resume_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}

/* ---- names ---- */

char *vmlet_mig_target_node(const VmPlanDisk *disk)
{
  return qdev_node_name(disk, "mig");
}

char *vmlet_mig_job_id(const VmPlanDisk *disk)
{
  return qdev_node_name(disk, "mirror");
}

/* ---- setup ---- */

static void setup_parameters(Seq *s)
{
  VmletMigrationParams p = VMLET_MIGRATION_PARAMS_INIT;
  p.tls_creds = VMLET_MIG_TLS_ID;
  if (s->peer_dn) {
    p.tls_authz = VMLET_MIG_AUTHZ_ID;
  } else {
    /* The destination's certificate must name the node vmletd chose. */
    p.tls_hostname = s->peer_name;
    p.max_bandwidth = (gint64)s->setup.bandwidth;
    p.downtime_limit = s->setup.downtime_ms;
  }
  if (s->setup.multifd_channels)
    p.multifd_channels = s->setup.multifd_channels;
  SEND(s, vmlet_monitor_migrate_set_parameters, &p);
}

/* A VM that came here by migration, or whose last one failed half-undone, may still hold
 * the objects: removed first, "not found" being the usual answer. */
static void setup_objects(Seq *s);

static void setup_clear(Seq *s)
{
  s->tolerant = TRUE;
  SEND(s, vmlet_monitor_object_del, VMLET_MIG_AUTHZ_ID);
  SEND(s, vmlet_monitor_object_del, VMLET_MIG_TLS_ID);
  s->next = setup_objects;
}

static void setup_objects(Seq *s)
{
  gboolean destination = s->peer_dn != NULL;
  s->tolerant = FALSE;
  SEND(s, vmlet_monitor_add_tls_creds, VMLET_MIG_TLS_ID, s->tls_dir, destination);
  if (destination)
    SEND(s, vmlet_monitor_add_authz, VMLET_MIG_AUTHZ_ID, s->peer_dn);
  /* The same set on both ends: QEMU refuses a stream whose capabilities differ. */
  VmletMigrationCap caps[] = {
      {"events", TRUE},
      {"pause-before-switchover", TRUE},
      {"auto-converge", s->setup.auto_converge},
      {"multifd", s->setup.multifd_channels > 0},
  };
  SEND(s, vmlet_monitor_migrate_set_capabilities, caps, G_N_ELEMENTS(caps));
  s->next = setup_parameters;
}

void vmlet_mig_setup_async(VmletMonitor *mon, gboolean destination, const VmletMigSetup *setup,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
  Seq *s = seq_new(mon, NULL, vmlet_mig_setup_async, cancellable, callback, user_data);
  s->setup = *setup;
  s->tls_dir = g_strdup(setup->tls_dir);
  s->peer_name = g_strdup(setup->peer_name);
  s->peer_dn = destination ? g_strdup(setup->peer_dn ? setup->peer_dn : "") : NULL;
  seq_start(s, setup_clear);
}

/* ---- destination: listen ---- */

static void listen_incoming(Seq *s)
{
  SEND(s, vmlet_monitor_migrate_incoming, s->uri);
}

static void listen_exports(Seq *s)
{
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *node = qdev_node_name(s->disks->pdata[i], "fmt");
    SEND(s, vmlet_monitor_block_export_add, node, node, TRUE);
  }
  s->next = listen_incoming;
}

static void listen_nbd(Seq *s)
{
  if (s->disks->len && s->nbd_port) {
    SEND(s, vmlet_monitor_nbd_server_start, s->address, s->nbd_port, VMLET_MIG_TLS_ID,
         VMLET_MIG_AUTHZ_ID);
    s->next = listen_exports;
  } else {
    s->next = listen_incoming;
  }
}

static char *tcp_uri(const char *address, guint port)
{
  /* An IPv6 address is bracketed in QEMU's URIs. */
  return strchr(address, ':') ? g_strdup_printf("tcp:[%s]:%u", address, port)
                              : g_strdup_printf("tcp:%s:%u", address, port);
}

void vmlet_mig_listen_async(VmletMonitor *mon, const char *address, guint port, guint nbd_port,
                            GPtrArray *disks, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
  Seq *s = seq_new(mon, disks, vmlet_mig_listen_async, cancellable, callback, user_data);
  s->address = g_strdup(address);
  s->uri = tcp_uri(address, port);
  s->nbd_port = nbd_port;
  seq_start(s, listen_nbd);
}

/* ---- source: mirrors ---- */

static void on_job_ready(VmletMonitor *mon, const char *job, Seq *s)
{
  if (g_strcmp0(s->awaited, "ready") == 0 && g_hash_table_remove(s->jobs, job))
    seq_one_done(s);
}

static void on_job_status(VmletMonitor *mon, const char *job, const char *status, Seq *s)
{
  if (!g_hash_table_contains(s->jobs, job))
    return;
  gboolean done = g_str_equal(status, s->awaited);
  /* A mirror that ends before it was asked to: it failed (its error is in query-block-jobs
   * and QEMU's log; the caller dismisses it). */
  gboolean failed = g_str_equal(s->awaited, "ready") &&
                    (g_str_equal(status, "aborting") || g_str_equal(status, "concluded"));
  if (!done && !failed)
    return;
  if (failed) {
    /* The sequence ends here, and its last reference may go with it: s is not touched
     * again (a mirror cancelled while still copying, e.g. by an uncordon mid-drain). */
    seq_fail(s, g_error_new(VMLET_ERROR, VMLET_ERROR_IO,
                            "mirror %s ended before it was in sync (%s)", job, status));
    return;
  }
  g_hash_table_remove(s->jobs, job);
  seq_one_done(s);
}

/* Waits for each disk's job to reach awaited ("ready" via BLOCK_JOB_READY, or a
 * JOB_STATUS_CHANGE status). */
static void await_jobs(Seq *s, const char *awaited)
{
  s->awaited = awaited;
  g_clear_pointer(&s->jobs, g_hash_table_unref);
  s->jobs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < s->disks->len; i++) {
    g_hash_table_add(s->jobs, vmlet_mig_job_id(s->disks->pdata[i]));
    s->left++;
  }
  if (!s->ready_id)
    s->ready_id = g_signal_connect(s->mon, "block-job-ready", G_CALLBACK(on_job_ready), s);
  if (!s->status_id)
    s->status_id = g_signal_connect(s->mon, "job-status", G_CALLBACK(on_job_status), s);
}

static void mirror_jobs(Seq *s)
{
  await_jobs(s, "ready");
  for (guint i = 0; i < s->disks->len; i++) {
    const VmPlanDisk *d = s->disks->pdata[i];
    g_autofree char *job = vmlet_mig_job_id(d), *device = qdev_node_name(d, "fmt");
    g_autofree char *target = vmlet_mig_target_node(d);
    SEND(s, vmlet_monitor_blockdev_mirror, job, device, target);
  }
}

static void mirror_targets(Seq *s)
{
  for (guint i = 0; i < s->disks->len; i++) {
    const VmPlanDisk *d = s->disks->pdata[i];
    g_autofree char *node = vmlet_mig_target_node(d), *export = qdev_node_name(d, "fmt");
    g_autofree char *port = g_strdup_printf("%u", s->nbd_port);
    g_autoptr(JsonObject) props = json_object_new();
    json_object_set_string_member(props, "driver", "nbd");
    json_object_set_string_member(props, "node-name", node);
    JsonObject *server = json_object_new();
    json_object_set_string_member(server, "type", "inet");
    json_object_set_string_member(server, "host", s->address);
    json_object_set_string_member(server, "port", port);
    json_object_set_object_member(props, "server", server);
    json_object_set_string_member(props, "export", export);
    json_object_set_string_member(props, "tls-creds", VMLET_MIG_TLS_ID);
    json_object_set_string_member(props, "tls-hostname", s->peer_name);
    /* blockdev-add connects in QEMU's main loop: a destination that dies mid-handshake
     * would hang it (and QMP with it) for good. With open-timeout QEMU gives up the
     * connection after 10 s (measured: a silent server is cancelled at 2.0 s of 2). */
    json_object_set_int_member(props, "open-timeout", VMLET_MIG_NBD_OPEN_TIMEOUT_S);
    SEND(s, vmlet_monitor_blockdev_add, props);
  }
  s->next = mirror_jobs;
}

void vmlet_mig_mirror_async(VmletMonitor *mon, const char *peer_address, guint nbd_port,
                            const char *peer_name, GPtrArray *disks, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
  Seq *s = seq_new(mon, disks, vmlet_mig_mirror_async, cancellable, callback, user_data);
  s->address = g_strdup(peer_address);
  s->peer_name = g_strdup(peer_name);
  s->nbd_port = nbd_port;
  seq_start(s, mirror_targets);
}

/* Both kinds in one stage (QMP runs them in order), every name taken from disks now:
 * their plan may be gone by the time the replies come. */
static void tidy(Seq *s)
{
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *job = vmlet_mig_job_id(s->disks->pdata[i]);
    SEND(s, vmlet_monitor_job_dismiss, job);
  }
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *node = vmlet_mig_target_node(s->disks->pdata[i]);
    SEND(s, vmlet_monitor_blockdev_del, node);
  }
}

static void complete_cancel(Seq *s)
{
  await_jobs(s, "concluded");
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *job = vmlet_mig_job_id(s->disks->pdata[i]);
    SEND(s, vmlet_monitor_block_job_cancel, job, FALSE);
  }
}

void vmlet_mig_mirror_complete_async(VmletMonitor *mon, GPtrArray *disks,
                                     GCancellable *cancellable, GAsyncReadyCallback callback,
                                     gpointer user_data)
{
  Seq *s = seq_new(mon, disks, vmlet_mig_mirror_complete_async, cancellable, callback,
                   user_data);
  seq_start(s, complete_cancel);
}

void vmlet_mig_mirror_tidy_async(VmletMonitor *mon, GPtrArray *disks,
                                 GCancellable *cancellable, GAsyncReadyCallback callback,
                                 gpointer user_data)
{
  Seq *s = seq_new(mon, disks, vmlet_mig_mirror_tidy_async, cancellable, callback, user_data);
  s->tolerant = TRUE;
  seq_start(s, tidy);
}

/* ---- undo ---- */

static void cleanup_objects(Seq *s)
{
  SEND(s, vmlet_monitor_object_del, VMLET_MIG_AUTHZ_ID);
  SEND(s, vmlet_monitor_object_del, VMLET_MIG_TLS_ID);
}

static void cleanup_nodes(Seq *s)
{
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *node = vmlet_mig_target_node(s->disks->pdata[i]);
    SEND(s, vmlet_monitor_blockdev_del, node);
  }
  SEND0(s, vmlet_monitor_nbd_server_stop);
  s->next = cleanup_objects;
}

static void cleanup_dismiss(Seq *s)
{
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *job = vmlet_mig_job_id(s->disks->pdata[i]);
    SEND(s, vmlet_monitor_job_dismiss, job);
  }
  s->next = cleanup_nodes;
}

static void cleanup_cancel(Seq *s)
{
  /* yank first, out of band: a migration or NBD client stuck on a dead link holds QEMU's
   * main loop, and every in-band command behind it. One instance a call: QEMU refuses the
   * whole list when one is not there. */
  SEND(s, vmlet_monitor_yank, NULL);
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *node = vmlet_mig_target_node(s->disks->pdata[i]);
    SEND(s, vmlet_monitor_yank, node);
  }
  SEND0(s, vmlet_monitor_migrate_cancel);
  for (guint i = 0; i < s->disks->len; i++) {
    g_autofree char *job = vmlet_mig_job_id(s->disks->pdata[i]);
    SEND(s, vmlet_monitor_block_job_cancel, job, TRUE);
  }
  s->next = cleanup_dismiss;
}

void vmlet_mig_cleanup_async(VmletMonitor *mon, gboolean destination, GPtrArray *disks,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  Seq *s = seq_new(mon, disks, vmlet_mig_cleanup_async, cancellable, callback, user_data);
  s->tolerant = TRUE;
  seq_start(s, destination ? cleanup_nodes : cleanup_cancel);
}

void vmlet_mig_cleanup_finish(GAsyncResult *result)
{
  g_task_propagate_boolean(G_TASK(result), NULL);
}

/* ---- destination: resume ---- */

static void resume_tidy(Seq *s)
{
  /* The VM runs: the incoming credentials are of no further use (a next migration makes
   * its own); failing to drop them fails nothing. */
  s->tolerant = TRUE;
  SEND(s, vmlet_monitor_object_del, VMLET_MIG_AUTHZ_ID);
  SEND(s, vmlet_monitor_object_del, VMLET_MIG_TLS_ID);
}

static void resume_cont(Seq *s)
{
  SEND0(s, vmlet_monitor_cont);
  s->next = resume_tidy;
}

static void resume_nbd(Seq *s)
{
  /* The export holds the image: QEMU cannot take its write lock back while it exists. */
  SEND0(s, vmlet_monitor_nbd_server_stop);
  s->next = resume_cont;
}

void vmlet_mig_resume_async(VmletMonitor *mon, gboolean nbd, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
  Seq *s = seq_new(mon, NULL, vmlet_mig_resume_async, cancellable, callback, user_data);
  seq_start(s, nbd ? resume_nbd : resume_cont);
}
