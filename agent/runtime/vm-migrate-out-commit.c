/* The source's end: the commit (asked again until the destination answers, never
 * resumed after it was sent), the hand-over, and telling the destination to abort. */
#include "vm-migrate-out.h"

#include "jsonval.h"

#define COMMIT_TIMEOUT_S 10
#define COMMIT_RETRY_S 2
/* The abort is told with twice a heartbeat's timeout: it is the last word. */
#define ABORT_TIMEOUT_S 4

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
  g_autofree char *throttle =
      m->throttle_max ? g_strdup_printf("; the vCPUs throttled up to %" G_GINT64_FORMAT "%%",
                                        m->throttle_max)
                      : g_strdup("");
  vm_note(m->vm, LOG_INFO, "migration %s: memory sent in %" G_GINT64_FORMAT " ms; the guest "
          "paused at most %" G_GINT64_FORMAT " ms (QEMU's downtime %" G_GINT64_FORMAT " ms)%s",
          m->journal->id, m->memory_ms, paused_ms, m->qemu_downtime_ms, throttle);
}

static void on_committed(GObject *src, GAsyncResult *res, gpointer data)
{
  VmMigOut *m = data;
  g_autoptr(GError) error = NULL;
  guint status = 0;
  g_autoptr(JsonNode) n = vmlet_peer_client_request_finish(res, &status, &error);
  if (mig_out_gone(error))
    return;
  m->commit_busy = FALSE;
  /* Only the commit step decides: an answer after the hand-over began (a repeated commit
   * answered 200 again, or a late 409) changes nothing, nor resumes a VM handed over. */
  if (m->ended || m->committed || m->step != MIG_STEP_COMMIT)
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
  m->commit_busy = TRUE;
  mig_out_peer_call(m, "POST", "/commit", body, COMMIT_TIMEOUT_S, m->cancel, on_committed, m);
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
  /* One commit in flight at a time: its answer (or its timeout) decides what comes next. */
  if (!m->commit_busy)
    send_commit(m);
}

void mig_out_hand_over(VmMigOut *m)
{
  VmletVm *vm = m->vm;
  m->committed = TRUE;
  g_clear_handle_id(&m->retry_timer, g_source_remove);
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
  /* The answer changes nothing: a destination not told aborts on its own watchdog. */
  g_autoptr(JsonNode) n G_GNUC_UNUSED = vmlet_peer_client_request_finish(res, NULL, NULL);
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
  mig_out_peer_call(m, "POST", "/abort", body, ABORT_TIMEOUT_S, NULL, on_abort_told, NULL);
}
