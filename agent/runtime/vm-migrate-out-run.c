/* The source's last steps: migrate (watched: progress, convergence, the peer's heartbeat),
 * switch over, commit, hand the VM over. */
#include "vm-migrate-out.h"

#include <string.h>

#include "jsonval.h"
#include "qemu-mig.h"
#include "vmlet-error.h"

#define POLL_MS 500
/* Heartbeats that may fail in a row, at POLL_MS each, before the link counts as lost:
 * about 5 s, each call timing out after 2 s. */
#define HEARTBEAT_MISSES 10
#define HEARTBEAT_TIMEOUT_S 2
#define COMMIT_TIMEOUT_S 10
#define COMMIT_RETRY_S 2
/* Each escalation doubles downtime-limit; then a stalled migration fails NotConverging. */
#define MAX_ESCALATIONS 3

static VmletMigrations *ms_of(VmMigOut *m)
{
  return m->vm->env->migrations;
}

static char *migration_path(VmMigOut *m, const char *tail)
{
  return g_strdup_printf("/peer/v1/migrations/%s%s", m->journal->id, tail);
}

static void peer_call(VmMigOut *m, const char *method, const char *tail, JsonNode *body,
                      guint timeout_s, GCancellable *c, GAsyncReadyCallback cb, gpointer data)
{
  g_autofree char *path = migration_path(m, tail);
  vmlet_peer_client_request_async(vmlet_migrations_client(ms_of(m)), m->peer,
                                  vmlet_migrations_node(ms_of(m))->migration.port, method, path,
                                  body, timeout_s, c, cb, data);
}

/* ---- watching ---- */

static void on_heartbeat(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) n = vmlet_peer_client_request_finish(vmlet_migrations_client(ms_of(m)),
                                                           res, &status, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  m->heartbeat_busy = FALSE;
  if (m->ended || m->failing || m->step >= MIG_STEP_COMMIT)
    return;
  const char *step = n && status == 200 ? jv_string_at(json_node_get_object(n), "step") : NULL;
  if ((n && status == 404) || g_strcmp0(step, "Aborting") == 0 ||
      g_strcmp0(step, "Aborted") == 0) {
    const char *why = step ? jv_string_at(json_node_get_object(n), "reason") : NULL;
    g_autofree char *msg = g_strdup_printf("%s has given the migration up%s%s", m->peer->name,
                                           why ? ": " : "", why ? why : "");
    mig_out_fail(m, "Aborted", msg);
    return;
  }
  if (n && status == 200) {
    m->heartbeat_misses = 0;
    return;
  }
  if (++m->heartbeat_misses >= HEARTBEAT_MISSES) {
    g_autofree char *why = g_strdup_printf("the link to %s is lost (%s)", m->peer->name,
                                           n ? "refused" : error->message);
    mig_out_fail(m, "Aborted", why);
  }
}

/* Stalled when the RAM left has not shrunk for progress-timeout: escalate downtime-limit
 * (the liveMigrationPolicy already chose auto-converge), then give up. */
static void check_convergence(VmMigOut *m)
{
  const VmletMigrationInfo *i = &m->info;
  if (i->status != VMLET_MIGRATION_ACTIVE || !i->ram_total)
    return;
  gint64 now = g_get_monotonic_time();
  if (!m->best_at_us || i->ram_remaining < m->best_remaining) {
    m->best_remaining = i->ram_remaining;
    m->best_at_us = now;
    return;
  }
  guint timeout = m->vm->env->node->migration.progress_timeout_s;
  if (now - m->best_at_us < (gint64)timeout * G_USEC_PER_SEC)
    return;
  if (m->escalations >= MAX_ESCALATIONS) {
    g_autofree char *why = g_strdup_printf(
        "no progress for %u s after %u escalations of the downtime limit (now %u ms; "
        "%" G_GUINT64_FORMAT " MiB still dirty, %" G_GUINT64_FORMAT " pages/s)",
        timeout, m->escalations, m->downtime_ms, i->ram_remaining >> 20, i->dirty_pages_rate);
    mig_out_fail(m, "NotConverging", why);
    return;
  }
  m->escalations++;
  m->downtime_ms *= 2;
  m->best_at_us = now;
  VmletMigrationParams p = VMLET_MIGRATION_PARAMS_INIT;
  p.downtime_limit = m->downtime_ms;
  VmletMonitor *mon = mig_out_monitor(m);
  if (mon)
    vmlet_monitor_migrate_set_parameters(mon, &p, NULL, NULL, NULL);
}

/* DVP's 10-90 while copying: the exact share of bytes sent, RAM and local disks together. */
static void update_progress(VmMigOut *m)
{
  guint64 total = m->info.ram_total + m->disk_total;
  guint64 done = m->info.ram_total - MIN(m->info.ram_remaining, m->info.ram_total) +
                 m->disk_done;
  if (total && m->step <= MIG_STEP_MIGRATE)
    mig_out_set_progress(m, MAX(m->progress, 10 + (gint)(80 * done / total)));
}

static void on_jobs(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GPtrArray) jobs = vmlet_monitor_query_block_jobs_finish(VMLET_MONITOR(src), res,
                                                                    NULL);
  m->polling_jobs = FALSE;
  if (!jobs || m->ended)
    return;
  m->disk_done = m->disk_total = 0;
  for (guint i = 0; i < jobs->len; i++) {
    VmletBlockJob *j = jobs->pdata[i];
    m->disk_done += j->offset;
    m->disk_total += j->len;
  }
  update_progress(m);
}

static void on_query(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  VmletMigrationInfo info = {0};
  m->polling = FALSE;
  if (!vmlet_monitor_query_migrate_finish(VMLET_MONITOR(src), res, &info, NULL) || m->ended) {
    vmlet_migration_info_clear(&info);
    return;
  }
  vmlet_migration_info_clear(&m->info);
  m->info = info;
  update_progress(m);
  check_convergence(m);
}

static gboolean on_poll(gpointer data)
{
  VmMigOut *m = data;
  VmletMonitor *mon = mig_out_monitor(m);
  /* One query of each kind in flight at most: QEMU stops reading QMP (out-of-band yank
   * included) once 8 in-band commands wait behind a stuck one. */
  if (mon && !m->polling) {
    m->polling = TRUE;
    vmlet_monitor_query_migrate(mon, m->cancel, on_query, m);
  }
  if (mon && !m->polling_jobs && m->mirror && m->mirror->len) {
    m->polling_jobs = TRUE;
    vmlet_monitor_query_block_jobs(mon, m->cancel, on_jobs, m);
  }
  if (!m->heartbeat_busy) {
    m->heartbeat_busy = TRUE;
    peer_call(m, "GET", "", NULL, HEARTBEAT_TIMEOUT_S, m->cancel, on_heartbeat, m);
  }
  return G_SOURCE_CONTINUE;
}

void mig_out_watch(VmMigOut *m)
{
  if (!m->poll_timer)
    m->poll_timer = g_timeout_add(POLL_MS, on_poll, m);
}

/* ---- migrate and switch over ---- */

/* Completed: QEMU's own measures for the operation and the log, then the commit. */
static void on_switched_over(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  VmletMigrationInfo info = {0};
  g_autoptr(GError) error = NULL;
  gboolean ok = vmlet_monitor_query_migrate_finish(VMLET_MONITOR(src), res, &info, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || m->ended) {
    vmlet_migration_info_clear(&info);
    return;
  }
  if (ok) {
    m->qemu_downtime_ms = info.downtime_ms;
    m->memory_ms = info.total_time_ms;
  }
  vmlet_migration_info_clear(&info);
  mig_out_next(m);
}

static void on_migration(VmletMonitor *mon, gint status, VmMigOut *m)
{
  if (m->ended || m->failing)
    return;
  switch ((VmletMigrationStatus)status) {
  case VMLET_MIGRATION_PRE_SWITCHOVER:
    if (m->step == MIG_STEP_MIGRATE) {
      m->paused_us = g_get_monotonic_time();
      mig_out_next(m);
    }
    return;
  case VMLET_MIGRATION_COMPLETED:
    if (m->step == MIG_STEP_SWITCHOVER) {
      if (m->mirror->len)
        vmlet_mig_mirror_tidy_async(mon, m->mirror, NULL, NULL, NULL);
      vmlet_monitor_query_migrate(mon, m->cancel, on_switched_over, m);
    }
    return;
  case VMLET_MIGRATION_FAILED:
  case VMLET_MIGRATION_CANCELLED: {
    g_autofree char *why = g_strdup_printf("QEMU's migration %s%s%s", vmlet_migration_status_name(status),
                                           m->info.error_desc ? ": " : "",
                                           m->info.error_desc ? m->info.error_desc : "");
    mig_out_fail(m, "Aborted", why);
    return;
  }
  case VMLET_MIGRATION_NONE:
  case VMLET_MIGRATION_SETUP:
  case VMLET_MIGRATION_ACTIVE:
  case VMLET_MIGRATION_DEVICE:
  case VMLET_MIGRATION_CANCELLING:
  case VMLET_MIGRATION_OTHER:
    return;
  }
}

static void on_sent(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  if (!vmlet_monitor_finish(VMLET_MONITOR(src), res, &error) && !m->ended)
    mig_out_fail(m, "Aborted", error->message);
}

void mig_out_migrate(VmMigOut *m)
{
  VmletMonitor *mon = mig_out_monitor(m);
  m->migration_id = g_signal_connect(mon, "migration", G_CALLBACK(on_migration), m);
  const char *a = m->peer->address;
  g_autofree char *uri = strchr(a, ':') ? g_strdup_printf("tcp:[%s]:%u", a, m->stream_port)
                                        : g_strdup_printf("tcp:%s:%u", a, m->stream_port);
  vmlet_monitor_migrate(mon, uri, NULL, on_sent, m);
}

static void on_mirrors_done(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  if (!vmlet_mig_mirror_complete_finish(res, &error)) {
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
      return; /* as on_mirrored: the job has failed, m may be gone */
    if (!m->ended)
      mig_out_fail(m, "TargetDiskError", error->message);
    return;
  }
  vmlet_monitor_migrate_continue(mig_out_monitor(m), NULL, on_sent, m);
}

void mig_out_switchover(VmMigOut *m)
{
  /* The vCPUs are stopped: the mirrors hold every write, so completing them now makes the
   * destination's disks exactly the source's. */
  if (m->mirror->len)
    vmlet_mig_mirror_complete_async(mig_out_monitor(m), m->mirror, m->cancel, on_mirrors_done,
                                    m);
  else
    vmlet_monitor_migrate_continue(mig_out_monitor(m), NULL, on_sent, m);
}

/* ---- commit ---- */

static void send_commit(VmMigOut *m);

static gboolean on_commit_retry(gpointer data)
{
  VmMigOut *m = data;
  m->retry_timer = 0;
  mig_out_commit(m);
  return G_SOURCE_REMOVE;
}

void mig_out_commit_later(VmMigOut *m, const char *why)
{
  g_autofree char *msg = g_strdup_printf("waiting for %s to confirm it runs the VM (%s); the "
                                         "source stays paused until it answers", m->peer->name,
                                         why);
  vm_set_str(&m->vm->last_exit, msg);
  vm_changed(m->vm);
  if (!m->retry_timer)
    m->retry_timer = g_timeout_add_seconds(COMMIT_RETRY_S, on_commit_retry, m);
}

/* The destination answered that it runs the VM: the guest was paused at most from the
 * vCPUs stopping here to that answer (QEMU's "downtime" ends earlier, when the last
 * page left: it misses completing the disk copies' and the commit's round trip). */
static void switched_over(VmMigOut *m)
{
  if (!m->paused_us)
    return; /* committed by a restarted vmletd: not measured */
  gint64 paused_ms = (g_get_monotonic_time() - m->paused_us) / 1000;
  vm_ops_switched_over(m->vm, m->op_uid, paused_ms, m->qemu_downtime_ms, m->memory_ms);
  vm_note(m->vm, LOG_INFO, "migration %s: memory sent in %" G_GINT64_FORMAT " ms; the guest "
          "paused at most %" G_GINT64_FORMAT " ms (QEMU's downtime %" G_GINT64_FORMAT " ms)",
          m->journal->id, m->memory_ms, paused_ms, m->qemu_downtime_ms);
}

static void on_committed(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) n = vmlet_peer_client_request_finish(vmlet_migrations_client(ms_of(m)),
                                                           res, &status, &error);
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || m->ended)
    return;
  if (n && status == 200) {
    g_clear_pointer(&m->vm->last_exit, g_free);
    switched_over(m);
    mig_out_next(m);
    return;
  }
  const char *reason = n ? jv_string_at(json_node_get_object(n), "reason") : NULL;
  if (n && status == 409 && g_strcmp0(reason, "Aborted") == 0) {
    /* The destination gave up before the commit reached it (it lost this node, or was
     * restarted before the commit): its journal says so, no copy runs there, so this one
     * resumes. Nothing else is taken for an abort: "no such migration" may be a
     * destination whose state was lost, and guessing wrong runs the VM twice. */
    m->gave_up = TRUE;
    mig_out_fail(m, "Aborted", "the destination gave the migration up before the commit");
    return;
  }
  g_autofree char *why = n ? g_strdup_printf("it answered %u %s", status,
                                             reason ? reason : "")
                           : g_strdup(error->message);
  mig_out_commit_later(m, why);
}

static void send_commit(VmMigOut *m)
{
  g_autoptr(JsonNode) body = json_node_new(JSON_NODE_OBJECT);
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "generation", (gint64)m->journal->generation);
  json_node_take_object(body, o);
  peer_call(m, "POST", "/commit", body, COMMIT_TIMEOUT_S, m->cancel, on_committed, m);
}

void mig_out_commit(VmMigOut *m)
{
  g_clear_handle_id(&m->poll_timer, g_source_remove);
  if (!m->peer) {
    /* Only after a restart with peers.d changed: nobody to ask, so nothing to decide. */
    g_autofree char *why = g_strdup_printf(
        "waiting for %s, which is no longer a configured peer, to confirm migration %s; the "
        "source stays paused (put %s back in peers.d)", m->journal->peer, m->journal->id,
        m->journal->peer);
    vm_set_str(&m->vm->last_exit, why);
    vm_changed(m->vm);
    return;
  }
  send_commit(m);
}

void mig_out_hand_over(VmMigOut *m)
{
  VmletVm *vm = m->vm;
  m->committed = TRUE;
  vm->rec->generation = m->journal->generation;
  mig_out_set_progress(m, 100);
  /* Before anything goes: whatever happens to vmletd from here, the VM never starts here
   * again (the drop-in is still there until the hand-over ends). */
  g_autoptr(GError) error = NULL;
  if (!vmlet_vm_tombstone_write(vm->env->node->state_dir, vm->namespace, vm->name,
                                m->journal->peer, m->journal->generation, &error))
    vm_note(vm, LOG_ERR, "%s", error->message);
  /* The destination runs the VM: this QEMU only holds a paused copy (if it still runs). */
  if (vm->qemu)
    vmlet_instance_quit(vm->qemu);
  else
    vm_migrate_out_exited(vm);
}

/* ---- telling the destination ---- */

static void on_abort_told(GObject *src, GAsyncResult *res, gpointer data)
{
  VmletPeerClient *client = data;
  /* The answer changes nothing: a destination not told aborts on its own watchdog. */
  g_autoptr(JsonNode) n G_GNUC_UNUSED = vmlet_peer_client_request_finish(client, res, NULL, NULL);
}

void mig_out_tell_abort(VmMigOut *m, const char *why)
{
  if (!m->peer)
    return;
  g_autoptr(JsonNode) body = json_node_new(JSON_NODE_OBJECT);
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "reason", why);
  json_node_take_object(body, o);
  /* Not cancelled with the job: the destination must hear it, even as the job ends. Its
   * own watchdog covers a message that is lost. */
  peer_call(m, "POST", "/abort", body, HEARTBEAT_TIMEOUT_S * 2, NULL, on_abort_told,
            vmlet_migrations_client(ms_of(m)));
}
