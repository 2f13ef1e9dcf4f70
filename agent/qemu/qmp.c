#include "qmp.h"

#include <string.h>

#include "jsonval.h"

G_DEFINE_QUARK(vmlet-qmp-error-quark, vmlet_qmp_error)

#define QMP_CHUNK (64 * 1024)

typedef enum {
  QMP_AWAIT_GREETING,
  QMP_AWAIT_CAPABILITIES,
  QMP_READY,
} QmpState;

struct _VmletQmp {
  GObject parent;
  GSocketConnection *conn;
  GInputStream *in;
  GOutputStream *out;
  GCancellable *cancel; /* ends the read loop and queued writes */
  GByteArray *rbuf;
  guint8 *chunk; /* read buffer, QMP_CHUNK bytes */
  GHashTable *pending; /* id -> GTask */
  GQueue writes;       /* GBytes *, each one whole message */
  gboolean writing;
  guint64 next_id;
  QmpState state;
  gboolean closed;
  gboolean oob;        /* QEMU offered out-of-band execution and it was enabled */
  char *version;
  GTask *connect_task; /* during the handshake only */
};

enum { SIGNAL_EVENT, SIGNAL_CLOSED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletQmp, vmlet_qmp, G_TYPE_OBJECT)

static void fail_connection(VmletQmp *qmp, GError *error);

static void vmlet_qmp_dispose(GObject *obj)
{
  VmletQmp *qmp = VMLET_QMP(obj);
  vmlet_qmp_close(qmp);
  G_OBJECT_CLASS(vmlet_qmp_parent_class)->dispose(obj);
}

static void vmlet_qmp_finalize(GObject *obj)
{
  VmletQmp *qmp = VMLET_QMP(obj);
  g_clear_object(&qmp->conn);
  g_clear_object(&qmp->cancel);
  g_byte_array_unref(qmp->rbuf);
  g_free(qmp->chunk);
  g_hash_table_unref(qmp->pending);
  g_queue_clear_full(&qmp->writes, (GDestroyNotify)g_bytes_unref);
  g_free(qmp->version);
  G_OBJECT_CLASS(vmlet_qmp_parent_class)->finalize(obj);
}

static void vmlet_qmp_class_init(VmletQmpClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  oc->dispose = vmlet_qmp_dispose;
  oc->finalize = vmlet_qmp_finalize;
  signals[SIGNAL_EVENT] =
      g_signal_new("event", VMLET_TYPE_QMP, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                   3, G_TYPE_STRING, JSON_TYPE_OBJECT, G_TYPE_INT64);
  signals[SIGNAL_CLOSED] = g_signal_new("closed", VMLET_TYPE_QMP, G_SIGNAL_RUN_LAST, 0, NULL,
                                        NULL, NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void vmlet_qmp_init(VmletQmp *qmp)
{
  qmp->cancel = g_cancellable_new();
  qmp->rbuf = g_byte_array_new();
  qmp->chunk = g_malloc(QMP_CHUNK);
  qmp->pending = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_object_unref);
  g_queue_init(&qmp->writes);
}

gboolean vmlet_qmp_is_closed(VmletQmp *qmp)
{
  return qmp->closed;
}

const char *vmlet_qmp_get_version(VmletQmp *qmp)
{
  return qmp->version;
}

/* ---- writing: one message at a time, in order ---- */

static void write_next(VmletQmp *qmp);

static void on_written(GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(VmletQmp) qmp = user_data;
  g_autoptr(GError) error = NULL;
  qmp->writing = FALSE;
  if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), res, NULL, &error)) {
    if (!qmp->closed)
      fail_connection(qmp, g_error_new(VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED,
                                       "writing to QMP failed: %s", error->message));
    return;
  }
  write_next(qmp);
}

static void write_next(VmletQmp *qmp)
{
  if (qmp->writing || qmp->closed || g_queue_is_empty(&qmp->writes))
    return;
  g_autoptr(GBytes) msg = g_queue_pop_head(&qmp->writes);
  gsize len = 0;
  const void *data = g_bytes_get_data(msg, &len);
  qmp->writing = TRUE;
  /* The data must outlive the write: keep the GBytes on the task via the qdata. */
  g_object_set_data_full(G_OBJECT(qmp), "vmlet-qmp-writing", g_bytes_ref(msg),
                         (GDestroyNotify)g_bytes_unref);
  g_output_stream_write_all_async(qmp->out, data, len, G_PRIORITY_DEFAULT, qmp->cancel,
                                  on_written, g_object_ref(qmp));
}

/* Commands sent out of band once QEMU offers it: they run in the monitor's own thread, so
 * they still work while QEMU's main loop is stuck (a migration or NBD socket on a dead
 * link) — which is what yank is for. Replies are matched by id, in any order. */
static const char *const oob_commands[] = {"yank", NULL};

static void send_command(VmletQmp *qmp, const char *command, JsonObject *arguments, GTask *task)
{
  g_autofree char *id = g_strdup_printf("vmlet-%" G_GUINT64_FORMAT, ++qmp->next_id);
  g_autoptr(JsonBuilder) b = json_builder_new_immutable();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, qmp->oob && g_strv_contains(oob_commands, command)
                                      ? "exec-oob"
                                      : "execute");
  json_builder_add_string_value(b, command);
  if (arguments) {
    json_builder_set_member_name(b, "arguments");
    g_autoptr(JsonNode) args = json_node_new(JSON_NODE_OBJECT);
    json_node_set_object(args, arguments);
    json_builder_add_value(b, g_steal_pointer(&args));
  }
  json_builder_set_member_name(b, "id");
  json_builder_add_string_value(b, id);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = json_to_string(root, FALSE);
  g_autofree char *line = g_strconcat(text, "\n", NULL);
  g_hash_table_insert(qmp->pending, g_steal_pointer(&id), g_object_ref(task));
  g_queue_push_tail(&qmp->writes, g_bytes_new_take(g_steal_pointer(&line), strlen(text) + 1));
  write_next(qmp);
}

/* ---- reading ---- */

static void on_capabilities(GObject *source, GAsyncResult *res, gpointer user_data)
{
  VmletQmp *qmp = VMLET_QMP(source);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vmlet_qmp_execute_finish(qmp, res, &error);
  GTask *task = g_steal_pointer(&qmp->connect_task);
  if (!task)
    return; /* the connection already failed and reported it */
  if (!ret) {
    g_task_return_error(task, g_steal_pointer(&error));
  } else {
    qmp->state = QMP_READY;
    g_task_return_pointer(task, g_object_ref(qmp), g_object_unref);
  }
  g_object_unref(task);
}

static void handle_greeting(VmletQmp *qmp, JsonObject *msg)
{
  JsonObject *greeting = jv_object_at(msg, "QMP");
  if (!greeting) {
    fail_connection(qmp, g_error_new(VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                                     "expected a QMP greeting, found another message"));
    return;
  }
  JsonObject *q = jv_object_at(jv_object_at(greeting, "version"), "qemu");
  if (q)
    qmp->version = g_strdup_printf("%" G_GINT64_FORMAT ".%" G_GINT64_FORMAT ".%" G_GINT64_FORMAT,
                                   jv_int_at(q, "major", 0), jv_int_at(q, "minor", 0),
                                   jv_int_at(q, "micro", 0));
  qmp->state = QMP_AWAIT_CAPABILITIES;
  JsonArray *caps = jv_array_at(greeting, "capabilities");
  for (guint i = 0; caps && i < json_array_get_length(caps); i++) {
    JsonNode *c = json_array_get_element(caps, i);
    if (JSON_NODE_HOLDS_VALUE(c) && g_strcmp0(json_node_get_string(c), "oob") == 0)
      qmp->oob = TRUE;
  }
  g_autoptr(JsonObject) args = NULL;
  if (qmp->oob) {
    args = json_object_new();
    JsonArray *enable = json_array_new();
    json_array_add_string_element(enable, "oob");
    json_object_set_array_member(args, "enable", enable);
  }
  vmlet_qmp_execute_async(qmp, "qmp_capabilities", args, NULL, on_capabilities, NULL);
}

static void handle_reply(VmletQmp *qmp, JsonObject *msg)
{
  JsonNode *idn = json_object_get_member(msg, "id");
  if (!idn || !JSON_NODE_HOLDS_VALUE(idn) || json_node_get_value_type(idn) != G_TYPE_STRING)
    return; /* replies to commands vmlet did not send carry no id of ours */
  g_autofree char *id = NULL;
  GTask *task = NULL;
  if (!g_hash_table_steal_extended(qmp->pending, json_node_get_string(idn), (gpointer *)&id,
                                   (gpointer *)&task))
    return;
  g_autoptr(GTask) owned = task;
  JsonObject *err = jv_object_at(msg, "error");
  if (err) {
    const char *cls = jv_string_at(err, "class");
    const char *desc = jv_string_at(err, "desc");
    cls = cls ? cls : "Error";
    desc = desc ? desc : "";
    g_task_return_new_error(owned, VMLET_QMP_ERROR, VMLET_QMP_ERROR_COMMAND, "%s: %s: %s",
                            (const char *)g_task_get_task_data(owned), cls, desc);
    return;
  }
  JsonNode *ret = json_object_get_member(msg, "return");
  if (!ret) {
    g_task_return_new_error(owned, VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                            "%s: reply has neither return nor error",
                            (const char *)g_task_get_task_data(owned));
    return;
  }
  g_task_return_pointer(owned, json_node_copy(ret), (GDestroyNotify)json_node_unref);
}

static void handle_line(VmletQmp *qmp, const char *line, gsize len)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  g_autoptr(GError) error = NULL;
  if (!json_parser_load_from_data(parser, line, (gssize)len, &error) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
    fail_connection(qmp, g_error_new(VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                                     "QMP sent a message that is not a JSON object: %s",
                                     error ? error->message : "wrong type"));
    return;
  }
  JsonObject *msg = json_node_get_object(json_parser_get_root(parser));
  switch (qmp->state) {
  case QMP_AWAIT_GREETING:
    handle_greeting(qmp, msg);
    return;
  case QMP_AWAIT_CAPABILITIES:
  case QMP_READY:
    break;
  }
  const char *event = jv_string_at(msg, "event");
  if (event) {
    JsonObject *t = jv_object_at(msg, "timestamp");
    gint64 ts = jv_int_at(t, "seconds", 0) * G_USEC_PER_SEC + jv_int_at(t, "microseconds", 0);
    g_signal_emit(qmp, signals[SIGNAL_EVENT], 0, event, jv_object_at(msg, "data"), ts);
    return;
  }
  handle_reply(qmp, msg);
}

static void read_more(VmletQmp *qmp);

static void on_read(GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(VmletQmp) qmp = user_data;
  g_autoptr(GError) error = NULL;
  gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), res, &error);
  if (qmp->closed)
    return;
  if (n < 0) {
    fail_connection(qmp, g_error_new(VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED,
                                     "reading QMP failed: %s", error->message));
    return;
  }
  if (n == 0) {
    fail_connection(qmp, g_error_new_literal(VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED,
                                             "QEMU closed the QMP connection"));
    return;
  }
  g_byte_array_append(qmp->rbuf, qmp->chunk, (guint)n);
  /* Handle every complete line; a handler may close the connection. */
  gsize start = 0;
  for (;;) {
    guint8 *nl = memchr(qmp->rbuf->data + start, '\n', qmp->rbuf->len - start);
    if (!nl)
      break;
    gsize len = (gsize)(nl - (qmp->rbuf->data + start));
    if (len > VMLET_QMP_MAX_MESSAGE) {
      fail_connection(qmp, g_error_new(VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                                       "QMP message of %" G_GSIZE_FORMAT " bytes exceeds the "
                                       "limit of %d", len, VMLET_QMP_MAX_MESSAGE));
      return;
    }
    if (len > 0)
      handle_line(qmp, (const char *)qmp->rbuf->data + start, len);
    if (qmp->closed)
      return;
    start += len + 1;
  }
  g_byte_array_remove_range(qmp->rbuf, 0, (guint)start);
  if (qmp->rbuf->len > VMLET_QMP_MAX_MESSAGE) {
    fail_connection(qmp, g_error_new(VMLET_QMP_ERROR, VMLET_QMP_ERROR_PROTOCOL,
                                     "QMP message exceeds the limit of %d bytes",
                                     VMLET_QMP_MAX_MESSAGE));
    return;
  }
  read_more(qmp);
}

static void read_more(VmletQmp *qmp)
{
  g_input_stream_read_async(qmp->in, qmp->chunk, QMP_CHUNK, G_PRIORITY_DEFAULT,
                            qmp->cancel, on_read, g_object_ref(qmp));
}

/* ---- ending ---- */

static void fail_connection(VmletQmp *qmp, GError *error)
{
  g_autoptr(GError) owned = error;
  if (qmp->closed)
    return;
  g_object_ref(qmp); /* handlers below may drop the last outside reference */
  qmp->closed = TRUE;
  g_cancellable_cancel(qmp->cancel);
  /* Shut the socket down rather than close the stream: a read is still pending, and
   * GIO refuses to close a stream with an outstanding operation. Finalize closes it. */
  if (qmp->conn)
    g_socket_shutdown(g_socket_connection_get_socket(qmp->conn), TRUE, TRUE, NULL);
  GHashTableIter it;
  gpointer key, value;
  g_autoptr(GPtrArray) tasks = g_ptr_array_new_with_free_func(g_object_unref);
  g_hash_table_iter_init(&it, qmp->pending);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    g_ptr_array_add(tasks, g_object_ref(value));
    g_hash_table_iter_remove(&it);
  }
  for (guint i = 0; i < tasks->len; i++) {
    GTask *t = tasks->pdata[i];
    g_task_return_new_error(t, VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED, "%s: %s",
                            (const char *)g_task_get_task_data(t), owned->message);
  }
  GTask *connect = g_steal_pointer(&qmp->connect_task);
  if (connect) {
    g_task_return_error(connect, g_error_copy(owned));
    g_object_unref(connect);
  }
  g_signal_emit(qmp, signals[SIGNAL_CLOSED], 0, owned);
  g_object_unref(qmp);
}

void vmlet_qmp_close(VmletQmp *qmp)
{
  if (!qmp->closed)
    fail_connection(qmp, g_error_new_literal(VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED,
                                             "QMP connection closed by vmlet"));
}

/* ---- public API ---- */

static void on_connected(GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  GSocketConnection *conn =
      g_socket_client_connect_finish(G_SOCKET_CLIENT(source), res, &error);
  if (!conn) {
    g_prefix_error(&error, "connecting to QMP at %s: ",
                   (const char *)g_task_get_task_data(task));
    g_task_return_error(task, g_steal_pointer(&error));
    return;
  }
  VmletQmp *qmp = g_object_new(VMLET_TYPE_QMP, NULL);
  qmp->conn = conn;
  qmp->in = g_io_stream_get_input_stream(G_IO_STREAM(conn));
  qmp->out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
  qmp->state = QMP_AWAIT_GREETING;
  qmp->connect_task = g_steal_pointer(&task);
  read_more(qmp);
  g_object_unref(qmp); /* the read loop and the connect task keep it alive */
}

void vmlet_qmp_connect_async(const char *socket_path, GCancellable *cancellable,
                             GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_qmp_connect_async);
  g_task_set_task_data(task, g_strdup(socket_path), g_free);
  g_autoptr(GSocketClient) client = g_socket_client_new();
  g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(socket_path);
  g_socket_client_connect_async(client, G_SOCKET_CONNECTABLE(addr), cancellable, on_connected,
                                task);
}

VmletQmp *vmlet_qmp_connect_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer(G_TASK(result), error);
}

void vmlet_qmp_execute_async(VmletQmp *qmp, const char *command, JsonObject *arguments,
                             GCancellable *cancellable, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(qmp, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_qmp_execute_async);
  g_task_set_task_data(task, g_strdup(command), g_free);
  if (qmp->closed) {
    g_task_return_new_error(task, VMLET_QMP_ERROR, VMLET_QMP_ERROR_CLOSED,
                            "%s: the QMP connection is closed", command);
    return;
  }
  send_command(qmp, command, arguments, task);
}

JsonNode *vmlet_qmp_execute_finish(VmletQmp *qmp, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail(g_task_is_valid(result, qmp), NULL);
  return g_task_propagate_pointer(G_TASK(result), error);
}
