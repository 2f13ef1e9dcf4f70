/* The engine of qemu-mig.c's sequences (see qemu-mig-private.h): every command in
 * flight holds a reference on the task, so a sequence outlives the replies after its end. */
#include "qemu-mig-private.h"

#include "vmlet-error.h"

static void disconnect_events(Seq *s)
{
  g_clear_signal_handler(&s->ready_id, s->mon);
  g_clear_signal_handler(&s->status_id, s->mon);
}

static void seq_free(gpointer p)
{
  Seq *s = p;
  disconnect_events(s);
  g_object_unref(s->mon);
  g_clear_error(&s->error);
  if (s->disks)
    g_ptr_array_unref(s->disks);
  g_free(s->address);
  g_free(s->peer_name);
  g_free(s->uri);
  g_free(s->tls_dir);
  g_free(s->peer_dn);
  g_clear_pointer(&s->jobs, g_hash_table_unref);
  g_free(s);
}

Seq *seq_new(VmletMonitor *mon, GPtrArray *disks, gpointer tag, GCancellable *c,
                    GAsyncReadyCallback callback, gpointer user_data)
{
  Seq *s = g_new0(Seq, 1);
  s->task = g_task_new(NULL, c, callback, user_data);
  g_task_set_source_tag(s->task, tag);
  g_task_set_task_data(s->task, s, seq_free);
  s->mon = g_object_ref(mon);
  s->disks = disks ? g_ptr_array_ref(disks) : g_ptr_array_new();
  return s;
}

/* Every command in flight holds a reference on the task, so the sequence outlives the
 * replies that come after it ended. */
void seq_end(Seq *s)
{
  GTask *task = s->task;
  s->ended = TRUE;
  disconnect_events(s);
  if (s->error && !s->tolerant)
    g_task_return_error(task, g_steal_pointer(&s->error));
  else
    g_task_return_boolean(task, TRUE);
  g_object_unref(task);
}

/* One awaited reply or event is in: the stage is over when none is left. */
void seq_one_done(Seq *s)
{
  if (s->ended || --s->left > 0)
    return;
  Stage next = s->next;
  s->next = NULL;
  /* Cancelled: its caller is gone, and so may be what the stages read (the disks are the
   * caller's plan's): no further stage runs, the task ends as cancelled. */
  if (g_cancellable_is_cancelled(g_task_get_cancellable(s->task)))
    next = NULL;
  if (next) {
    s->left = 1; /* held while the stage sends, so a stage with nothing to send ends too */
    next(s);
    seq_one_done(s);
  } else {
    seq_end(s);
  }
}

/* The first failure ends the sequence at once: a stage waiting for events that will never
 * come (a mirror QEMU refused to start) must not hang. */
void seq_fail(Seq *s, GError *error)
{
  if (s->ended || s->tolerant) {
    g_error_free(error);
    return;
  }
  s->error = error;
  seq_end(s);
}

void seq_on_reply(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(GTask) task = data;
  Seq *s = g_task_get_task_data(task);
  GError *error = NULL;
  /* Undoing, "already gone" is success: every reply just counts. */
  if (!vmlet_monitor_finish(VMLET_MONITOR(src), res, &error))
    seq_fail(s, error);
  seq_one_done(s);
}

void seq_start(Seq *s, Stage first)
{
  g_object_ref(s->task); /* the start's own hold, until the first stage has sent */
  s->left = 1;
  s->next = first;
  seq_one_done(s);
  g_object_unref(s->task);
}
