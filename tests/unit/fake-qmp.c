/* A scripted QMP peer (fake-qmp.h). */
#include "fake-qmp-private.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#define GREETING                                                                            \
  "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "         \
  "\"package\": \"Debian 1:7.2+dfsg-7+deb12u7\"}, \"capabilities\": []}}"

static Conn *conn_ref(Conn *c)
{
  g_atomic_int_inc(&c->refs);
  return c;
}

static void conn_unref(Conn *c)
{
  if (!g_atomic_int_dec_and_test(&c->refs))
    return;
  g_object_unref(c->in);
  g_object_unref(c->io);
  g_object_unref(c->cancel);
  g_free(c);
}

/* ---- writing ---- */

static void conn_write(Conn *c, const char *text)
{
  if (c->closed)
    return;
  g_autofree char *line = g_strconcat(text, "\n", NULL);
  GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(c->io));
  /* Small messages on a local socket: a blocking write never waits here. A client that
   * has gone away makes it fail, which only the reader needs to notice. */
  g_output_stream_write_all(out, line, strlen(line), NULL, NULL, NULL);
}

char *fq_to_text(JsonNode *node)
{
  return json_to_string(node, FALSE);
}

void fq_send_reply(Conn *c, const char *reply, JsonNode *id)
{
  g_autoptr(JsonParser) p = json_parser_new();
  if (!json_parser_load_from_data(p, reply, -1, NULL) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    conn_write(c, reply); /* not QMP: sent as the test wrote it */
    return;
  }
  g_autoptr(JsonNode) root = json_node_copy(json_parser_get_root(p));
  if (id)
    json_object_set_member(json_node_get_object(root), "id", json_node_copy(id));
  g_autofree char *text = fq_to_text(root);
  conn_write(c, text);
}

/* ---- reading ---- */

/* Shut down rather than closed: a read is still pending, and GIO will not close a stream
 * with an outstanding operation. The last reference closes it. */
static void conn_hang_up(Conn *c)
{
  g_cancellable_cancel(c->cancel);
  g_socket_shutdown(g_socket_connection_get_socket(c->io), TRUE, TRUE, NULL);
}

static void conn_close(Conn *c)
{
  if (c->closed)
    return;
  c->closed = TRUE;
  conn_hang_up(c);
  FakeQmp *fq = c->fq;
  if (!fq)
    return;
  for (guint i = fq->held->len; i-- > 0;)
    if (((Held *)fq->held->pdata[i])->conn == c)
      g_ptr_array_remove_index(fq->held, i);
  if (fq->current == c)
    fq->current = NULL;
  g_ptr_array_remove(fq->conns, c); /* drops the list's reference */
}

static void handle_command(Conn *c, JsonObject *msg)
{
  FakeQmp *fq = c->fq;
  JsonNode *cmd_node = json_object_get_member(msg, "execute");
  JsonNode *id = json_object_get_member(msg, "id");
  JsonNode *args_node = json_object_get_member(msg, "arguments");
  if (!cmd_node || json_node_get_value_type(cmd_node) != G_TYPE_STRING) {
    fq_send_reply(c, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input "
                  "member 'execute' is missing\"}}", id);
    return;
  }
  const char *command = json_node_get_string(cmd_node);
  JsonObject *args = args_node && JSON_NODE_HOLDS_OBJECT(args_node)
                         ? json_node_get_object(args_node) : NULL;
  FakeQmpCommand *entry = g_new0(FakeQmpCommand, 1);
  entry->command = g_strdup(command);
  entry->arguments = args_node ? fq_to_text(args_node) : g_strdup("{}");
  entry->connection = c->number;
  g_ptr_array_add(fq->log, entry);
  if (g_str_equal(command, "qmp_capabilities")) {
    c->negotiated = TRUE;
    fq_send_reply(c, EMPTY_REPLY, id);
    return;
  }
  if (!c->negotiated) {
    fq_send_reply(c, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting "
                  "capabilities negotiation with 'qmp_capabilities'\"}}", id);
    return;
  }
  if (fq_find_rule(fq, command, args, TRUE)) {
    Held *h = g_new0(Held, 1);
    h->conn = c;
    h->command = g_strdup(command);
    h->args = args ? json_object_ref(args) : NULL;
    h->id = id ? json_node_copy(id) : NULL;
    g_ptr_array_add(fq->held, h);
  } else {
    const Rule *r = fq_find_rule(fq, command, args, FALSE);
    fq_send_reply(c, r ? r->reply : EMPTY_REPLY, id);
  }
  /* A hook may free nothing of ours but may disconnect c: keep it until we are done. */
  conn_ref(c);
  for (guint i = 0; i < fq->hooks->len; i++) {
    Hook *h = fq->hooks->pdata[i];
    if (!h->command || g_str_equal(h->command, command))
      h->hook(fq, command, args, h->data);
  }
  conn_unref(c);
}

static void read_next(Conn *c);

static void on_line(GObject *src, GAsyncResult *res, gpointer data)
{
  Conn *c = data;
  g_autoptr(GError) error = NULL;
  gsize len = 0;
  g_autofree char *line =
      g_data_input_stream_read_line_finish_utf8(G_DATA_INPUT_STREAM(src), res, &len, &error);
  if (!c->fq || c->closed) {
    conn_unref(c);
    return;
  }
  if (!line) {
    conn_close(c); /* EOF, or the client hung up */
    conn_unref(c);
    return;
  }
  g_autoptr(JsonParser) p = json_parser_new();
  if (len > 0 && json_parser_load_from_data(p, line, (gssize)len, NULL) &&
      JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
    handle_command(c, json_node_get_object(json_parser_get_root(p)));
  if (c->fq && !c->closed)
    read_next(c);
  conn_unref(c);
}

static void read_next(Conn *c)
{
  g_data_input_stream_read_line_async(c->in, G_PRIORITY_DEFAULT, c->cancel, on_line,
                                      conn_ref(c));
}

static gboolean on_incoming(GSocketService *service, GSocketConnection *io, GObject *source,
                            FakeQmp *fq)
{
  Conn *c = g_new0(Conn, 1);
  c->refs = 1; /* the list's */
  c->fq = fq;
  c->io = g_object_ref(io);
  c->in = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(io)));
  g_data_input_stream_set_newline_type(c->in, G_DATA_STREAM_NEWLINE_TYPE_LF);
  c->cancel = g_cancellable_new();
  c->number = ++fq->n_conns;
  g_ptr_array_add(fq->conns, c);
  fq->current = c;
  conn_write(c, GREETING);
  read_next(c);
  return TRUE;
}

/* ---- the peer ---- */

FakeQmp *fake_qmp_new(const char *socket_path, GError **error)
{
  if (g_unlink(socket_path) < 0 && errno != ENOENT) {
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s", socket_path,
                g_strerror(errno));
    return NULL;
  }
  g_autoptr(GSocketService) service = g_socket_service_new();
  g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(socket_path);
  if (!g_socket_listener_add_address(G_SOCKET_LISTENER(service), addr, G_SOCKET_TYPE_STREAM,
                                     G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL, error))
    return NULL;
  FakeQmp *fq = g_new0(FakeQmp, 1);
  fq->path = g_strdup(socket_path);
  fq->service = g_steal_pointer(&service);
  fq->rules = g_ptr_array_new_with_free_func(fq_rule_free);
  fq->hooks = g_ptr_array_new_with_free_func(fq_hook_free);
  fq->held = g_ptr_array_new_with_free_func(fq_held_free);
  fq->log = g_ptr_array_new_with_free_func(fq_command_free);
  fq->conns = g_ptr_array_new_with_free_func((GDestroyNotify)conn_unref);
  g_signal_connect(fq->service, "incoming", G_CALLBACK(on_incoming), fq);
  g_socket_service_start(fq->service);
  return fq;
}

void fake_qmp_free(FakeQmp *fq)
{
  if (!fq)
    return;
  g_signal_handlers_disconnect_by_data(fq->service, fq);
  g_socket_service_stop(fq->service);
  g_socket_listener_close(G_SOCKET_LISTENER(fq->service));
  g_clear_object(&fq->service);
  g_ptr_array_set_size(fq->held, 0);
  while (fq->conns->len) {
    Conn *c = fq->conns->pdata[0];
    c->fq = NULL;
    c->closed = TRUE;
    conn_hang_up(c);
    g_ptr_array_remove_index(fq->conns, 0);
  }
  g_ptr_array_unref(fq->conns);
  g_ptr_array_unref(fq->rules);
  g_ptr_array_unref(fq->hooks);
  g_ptr_array_unref(fq->held);
  g_ptr_array_unref(fq->log);
  g_unlink(fq->path);
  g_free(fq->path);
  g_free(fq);
}

const char *fake_qmp_socket(FakeQmp *fq)
{
  return fq->path;
}

gboolean fake_qmp_emit(FakeQmp *fq, const char *event, const char *data)
{
  if (!fq->current)
    return FALSE;
  gint64 now = g_get_real_time();
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "timestamp");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "seconds");
  json_builder_add_int_value(b, now / G_USEC_PER_SEC);
  json_builder_set_member_name(b, "microseconds");
  json_builder_add_int_value(b, now % G_USEC_PER_SEC);
  json_builder_end_object(b);
  json_builder_set_member_name(b, "event");
  json_builder_add_string_value(b, event);
  if (data) {
    g_autoptr(JsonObject) o = fq_parse_object(data);
    json_builder_set_member_name(b, "data");
    g_autoptr(JsonNode) n = json_node_init_object(json_node_alloc(), o);
    json_builder_add_value(b, g_steal_pointer(&n));
  }
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = fq_to_text(root);
  conn_write(fq->current, text);
  return TRUE;
}

void fake_qmp_disconnect(FakeQmp *fq)
{
  if (fq->current)
    conn_close(fq->current);
}

gboolean fake_qmp_is_connected(FakeQmp *fq)
{
  return fq->current != NULL;
}

guint fake_qmp_connections(FakeQmp *fq)
{
  return fq->n_conns;
}
