/* qemu-mig.c's engine: a sequence of stages, each a batch of QMP commands sent back to
 * back, the next stage started when every reply (or awaited event) of this one is in.
 * Shared by qemu-mig.c and qemu-mig-seq.c only. */
#pragma once

#include "qemu-mig.h"

typedef struct Seq Seq;
typedef void (*Stage)(Seq *s);

struct Seq {
  GTask *task;
  VmletMonitor *mon;
  guint left;        /* replies (or events) the stage still waits for */
  GError *error;     /* the first failure */
  gboolean tolerant; /* cleanup: try everything, fail nothing */
  Stage next;
  GPtrArray *disks;  /* VmPlanDisk *, borrowed from the caller for the call's length */
  char *address, *peer_name, *uri;
  guint port, nbd_port;
  VmletMigSetup setup;
  char *tls_dir, *peer_dn;
  GHashTable *jobs;  /* job ids still awaited */
  const char *awaited; /* "ready" or "concluded" */
  gulong ready_id, status_id;
  gboolean ended;    /* returned: replies still coming in change nothing */
};

Seq *seq_new(VmletMonitor *mon, GPtrArray *disks, gpointer tag, GCancellable *c,
             GAsyncReadyCallback callback, gpointer user_data);
/* Runs first, then each s->next a stage set, until none is set or one fails. */
void seq_start(Seq *s, Stage first);
/* One awaited reply or event is in. */
void seq_one_done(Seq *s);
/* Ends the sequence with error (taken), unless it is tolerant. */
void seq_fail(Seq *s, GError *error);
void seq_end(Seq *s);
/* The callback of every command a stage sends (SEND, SEND0). */
void seq_on_reply(GObject *src, GAsyncResult *res, gpointer data);

#define SEND(s, call, ...)                                                                     \
  do {                                                                                         \
    (s)->left++;                                                                               \
    call((s)->mon, __VA_ARGS__, g_task_get_cancellable((s)->task), seq_on_reply,               \
         g_object_ref((s)->task));                                                             \
  } while (0)
#define SEND0(s, call)                                                                         \
  do {                                                                                         \
    (s)->left++;                                                                               \
    call((s)->mon, g_task_get_cancellable((s)->task), seq_on_reply, g_object_ref((s)->task));  \
  } while (0)
