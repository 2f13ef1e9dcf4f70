#include "client.h"

#include <string.h>

#include <libsoup/soup.h>

#include "vmlet-error.h"

/* The API never sends more than a List of every VM; bound what the CLI accepts. */
#define MAX_REPLY_BYTES (16 * 1024 * 1024)

struct _VmletClient {
  SoupSession *session;
  char *socket_path;
};

VmletClient *vmlet_client_new(const char *socket_path)
{
  VmletClient *c = g_new0(VmletClient, 1);
  g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(socket_path);
  c->session = soup_session_new_with_options("remote-connectable", addr, "timeout", 60, NULL);
  c->socket_path = g_strdup(socket_path);
  return c;
}

void vmlet_client_free(VmletClient *c)
{
  if (!c)
    return;
  g_clear_object(&c->session);
  g_free(c->socket_path);
  g_free(c);
}

JsonNode *vmlet_client_request(VmletClient *c, const char *method, const char *path,
                               const char *body, gsize body_len, guint *status, GError **error)
{
  g_autofree char *uri = g_strconcat("http://localhost", path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new(method, uri);
  if (!msg) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "bad request path %s", path);
    return NULL;
  }
  if (body) {
    g_autoptr(GBytes) bytes = g_bytes_new(body, body_len);
    soup_message_set_request_body_from_bytes(msg, "application/json", bytes);
  }
  g_autoptr(GError) local = NULL;
  g_autoptr(GBytes) reply = soup_session_send_and_read(c->session, msg, NULL, &local);
  if (!reply) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO,
                "cannot reach vmletd at %s: %s (is vmletd running?)", c->socket_path,
                local->message);
    return NULL;
  }
  gsize len = 0;
  const char *data = g_bytes_get_data(reply, &len);
  if (len > MAX_REPLY_BYTES) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE, "vmletd's reply is too large");
    return NULL;
  }
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  if (!json_parser_load_from_data(parser, data ? data : "", (gssize)len, &local) ||
      !json_parser_get_root(parser)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "vmletd sent a reply that is not JSON (HTTP %u)",
                soup_message_get_status(msg));
    return NULL;
  }
  *status = soup_message_get_status(msg);
  return json_node_copy(json_parser_get_root(parser));
}

gboolean vmlet_client_watch(VmletClient *c, const char *path, VmletWatchFunc func,
                            gpointer user_data, GError **error)
{
  /* No timeout: a watch is idle for as long as nothing changes. */
  return vmlet_client_watch_timeout(c, path, 0, func, user_data, error);
}

gboolean vmlet_client_watch_timeout(VmletClient *c, const char *path, guint idle_timeout_s,
                                    VmletWatchFunc func, gpointer user_data, GError **error)
{
  g_autofree char *uri = g_strconcat("http://localhost", path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new("GET", uri);
  g_autoptr(GError) local = NULL;
  g_object_set(c->session, "timeout", idle_timeout_s, NULL);
  g_autoptr(GInputStream) in = soup_session_send(c->session, msg, NULL, &local);
  if (!in) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO,
                "cannot reach vmletd at %s: %s (is vmletd running?)", c->socket_path,
                local->message);
    return FALSE;
  }
  if (soup_message_get_status(msg) != 200) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "vmletd refused the watch (HTTP %u)",
                soup_message_get_status(msg));
    return FALSE;
  }
  g_autoptr(GDataInputStream) lines = g_data_input_stream_new(in);
  for (;;) {
    gsize len = 0;
    g_autofree char *line = g_data_input_stream_read_line(lines, &len, NULL, &local);
    if (!line && local) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s", local->message);
      return FALSE;
    }
    if (!line)
      return TRUE; /* EOF: vmletd went away or ended the stream */
    if (len > MAX_REPLY_BYTES)
      continue;
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    if (!json_parser_load_from_data(parser, line, (gssize)len, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)))
      continue;
    if (!func(json_node_get_object(json_parser_get_root(parser)), user_data))
      return TRUE;
  }
}
