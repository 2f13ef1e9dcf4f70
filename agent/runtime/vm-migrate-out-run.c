/* The source's copy: migrate, watched (progress, convergence, the peer's heartbeat), then
 * the switchover. The commit and the hand-over are vm-migrate-out-commit.c's. */
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
/* Each escalation doubles downtime-limit; then a stalled migration fails NotConverging. */
#define MAX_ESCALATIONS 3

void mig_out_peer_call(VmMigOut *m, const char *method, const char *tail, JsonNode *body,
                       guint timeout_s, GCancellable *c, GAsyncReadyCallback cb, gpointer data)
{
  VmletMigrations *ms = m->vm->env->migrations;
  g_autofree char *path = g_strdup_printf("/peer/v1/migrations/%s%s", m->journal->id, tail);
  vmlet_peer_client_request_async(vmlet_migrations_client(ms), m->peer,
                                  vmlet_migrations_node(ms)->migration.port, method, path,
                                  body, timeout_s, c, cb, data);
}

/* ---- watching ---- */

static void on_heartbeat(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) n = vmlet_peer_client_request_finish(res, &status, &error);
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

/* QEMU's max-cpu-throttle default: auto-converge never slows the vCPUs further. */
#define THROTTLE_MAX 99

/* Stalled when the RAM left has not shrunk for progress-timeout: escalate downtime-limit,
 * then give up. With auto-converge (the liveMigrationPolicy's choice) QEMU raises its vCPU
 * throttle by 10 points per pass that the guest out-dirties, from 20 to 99: until it is at
 * its maximum the stall is QEMU still working, not the end (under TCG here a 48 MiB
 * rewrite loop needs ~8 such passes of ~6 s each at 8 MiB/s). */
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
    if (m->auto_converge && i->cpu_throttle_percentage < THROTTLE_MAX) {
      m->best_at_us = now;
      return;
    }
    g_autofree char *throttle =
        m->auto_converge ? g_strdup_printf(", the vCPUs throttled %" G_GINT64_FORMAT "%%",
                                           i->cpu_throttle_percentage)
                         : g_strdup("");
    g_autofree char *why = g_strdup_printf(
        "no progress for %u s after %u escalations of the downtime limit (now %u ms%s; "
        "%" G_GUINT64_FORMAT " MiB still dirty, %" G_GUINT64_FORMAT " pages/s)",
        timeout, m->escalations, m->downtime_ms, throttle, i->ram_remaining >> 20,
        i->dirty_pages_rate);
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
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) jobs = vmlet_monitor_query_block_jobs_finish(VMLET_MONITOR(src), res,
                                                                    &error);
  if (mig_out_gone(error))
    return;
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
  g_autoptr(GError) error = NULL;
  gboolean ok = vmlet_monitor_query_migrate_finish(VMLET_MONITOR(src), res, &info, &error);
  if (mig_out_gone(error))
    return;
  m->polling = FALSE;
  if (!ok || m->ended) {
    vmlet_migration_info_clear(&info);
    return;
  }
  vmlet_migration_info_clear(&m->info);
  m->info = info;
  m->throttle_max = MAX(m->throttle_max, info.cpu_throttle_percentage);
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
    mig_out_peer_call(m, "GET", "", NULL, HEARTBEAT_TIMEOUT_S, m->cancel, on_heartbeat, m);
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
    g_autofree char *why = g_strdup_printf("QEMU's migration %s%s%s",
                                           vmlet_migration_status_name(status),
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
  if (!vmlet_monitor_finish(VMLET_MONITOR(src), res, &error) && !mig_out_gone(error) &&
      !m->ended)
    mig_out_fail(m, "Aborted", error->message);
}

void mig_out_migrate(VmMigOut *m)
{
  VmletMonitor *mon = mig_out_monitor(m);
  m->migration_id = g_signal_connect(mon, "migration", G_CALLBACK(on_migration), m);
  const char *a = m->peer->address;
  g_autofree char *uri = strchr(a, ':') ? g_strdup_printf("tcp:[%s]:%u", a, m->stream_port)
                                        : g_strdup_printf("tcp:%s:%u", a, m->stream_port);
  vmlet_monitor_migrate(mon, uri, m->cancel, on_sent, m);
}

static void on_mirrors_done(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  if (!vmlet_mig_mirror_complete_finish(res, &error)) {
    if (!mig_out_gone(error) && !m->ended)
      mig_out_fail(m, "TargetDiskError", error->message);
    return;
  }
  vmlet_monitor_migrate_continue(mig_out_monitor(m), m->cancel, on_sent, m);
}

void mig_out_switchover(VmMigOut *m)
{
  /* The vCPUs are stopped: the mirrors hold every write, so completing them now makes the
   * destination's disks exactly the source's. */
  if (m->mirror->len)
    vmlet_mig_mirror_complete_async(mig_out_monitor(m), m->mirror, m->cancel,
                                    on_mirrors_done, m);
  else
    vmlet_monitor_migrate_continue(mig_out_monitor(m), m->cancel, on_sent, m);
}
