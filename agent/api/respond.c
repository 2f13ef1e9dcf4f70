#include "respond.h"

#include <string.h>

#include "errors.h"

void vmlet_respond_json(SoupServerMessage *msg, guint status, JsonNode *node)
{
  /* Compact, as a Kubernetes API server answers: indentation made a list of 1000 VMs 1.8
   * instead of 1 MB, and json-glib's parsing in `vmlet get` is proportional to it. */
  g_autofree char *text = json_to_string(node, FALSE);
  g_autofree char *body = g_strconcat(text, "\n", NULL);
  soup_server_message_set_status(msg, status, NULL);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, body,
                                   strlen(body));
  /* One request per connection, closed by vmletd once it has answered: libsoup 3.2
   * (Debian 12) never frees an idle keep-alive connection that its client closes (fixed
   * upstream in 3.3, commit d20c6601), so every `vmlet` call or curl cost vmletd a file
   * descriptor and 2 KiB for good (3000 requests: 3000 fds). A watch stream is answered
   * elsewhere (watch.c) and keeps its connection. */
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection",
                               "close");
}

void vmlet_respond_status(SoupServerMessage *msg, guint code, const char *reason,
                          const char *message)
{
  g_autoptr(JsonNode) n = vmlet_api_status_new(code, reason, message);
  vmlet_respond_json(msg, code, n);
}

void vmlet_respond_error(SoupServerMessage *msg, const GError *error)
{
  const char *reason = NULL;
  guint code = vmlet_api_error_status(error, &reason);
  vmlet_respond_status(msg, code, reason, error->message);
}

void vmlet_respond_result(SoupServerMessage *msg, guint status, JsonNode *result,
                          const GError *error)
{
  g_autoptr(JsonNode) n = result;
  if (n)
    vmlet_respond_json(msg, status, n);
  else
    vmlet_respond_error(msg, error);
}

void vmlet_respond_list(SoupServerMessage *msg, JsonArray *items)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "apiVersion", "v1");
  json_object_set_string_member(o, "kind", "List");
  json_object_set_array_member(o, "items", items);
  g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  vmlet_respond_json(msg, 200, n);
}

GBytes *vmlet_call_body(VmletCall *call)
{
  return soup_message_body_flatten(soup_server_message_get_request_body(call->msg));
}

/* An early handler runs once the headers are in, before libsoup reads the body; but only
 * with "Expect: 100-continue" does a status set here stop the read. So a refused body is
 * also cut off: the read side of the connection shut down, libsoup's read of the body ends
 * at once and the request is aborted, nothing of the body buffered. */
static void bound_body(SoupServer *server, SoupServerMessage *msg, const char *path,
                       GHashTable *query, gpointer data)
{
  goffset max = GPOINTER_TO_SIZE(data);
  SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
  SoupEncoding enc = soup_message_headers_get_encoding(h);
  if (enc == SOUP_ENCODING_NONE)
    return;
  if (enc != SOUP_ENCODING_CONTENT_LENGTH) {
    vmlet_respond_status(msg, 411, "LengthRequired", "a request body needs a Content-Length");
  } else if (soup_message_headers_get_content_length(h) > max) {
    g_autofree char *why = g_strdup_printf("request body of %" G_GOFFSET_FORMAT " bytes: at "
                                           "most %" G_GOFFSET_FORMAT " are read",
                                           soup_message_headers_get_content_length(h), max);
    vmlet_respond_status(msg, 413, "RequestEntityTooLarge", why);
  } else {
    return;
  }
  const char *expect = soup_message_headers_get_one(h, "Expect");
  GSocket *sock = soup_server_message_get_socket(msg);
  if (!(expect && g_ascii_strcasecmp(expect, "100-continue") == 0) && sock)
    g_socket_shutdown(sock, TRUE, FALSE, NULL);
}

void vmlet_respond_bound_bodies(SoupServer *server, goffset max)
{
  soup_server_add_early_handler(server, NULL, bound_body, GSIZE_TO_POINTER((gsize)max), NULL);
}
