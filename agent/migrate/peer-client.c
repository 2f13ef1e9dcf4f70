#include "peer-client.h"

#include <libsoup/soup.h>
#include <string.h>

#include "jsonval.h"
#include "vmlet-error.h"

struct _VmletPeerClient {
  const VmletTls *tls;
};

VmletPeerClient *vmlet_peer_client_new(const VmletTls *tls)
{
  VmletPeerClient *c = g_new0(VmletPeerClient, 1);
  c->tls = tls;
  return c;
}

void vmlet_peer_client_free(VmletPeerClient *client)
{
  g_free(client);
}

typedef struct {
  SoupSession *session;
  SoupMessage *msg;
  GByteArray *answer;
  guint8 chunk[16 * 1024];
  char *what; /* "POST https://hv-2:7443/peer/v1/migrations" for messages */
} Call;

static void call_free(gpointer p)
{
  Call *c = p;
  g_clear_object(&c->session);
  g_clear_object(&c->msg);
  if (c->answer)
    g_byte_array_unref(c->answer);
  g_free(c->what);
  g_free(c);
}

static void read_more(GTask *task, GInputStream *in);

static void on_read(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(GTask) task = data;
  Call *c = g_task_get_task_data(task);
  GError *error = NULL;
  gssize n = g_input_stream_read_finish(G_INPUT_STREAM(src), res, &error);
  if (n < 0) {
    g_prefix_error(&error, "%s: ", c->what);
    g_task_return_error(task, error);
    return;
  }
  if (n > 0) {
    if (c->answer->len + (gsize)n > VMLET_PEER_MAX_ANSWER) {
      g_task_return_new_error(task, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                              "%s: the answer exceeds %d bytes", c->what,
                              VMLET_PEER_MAX_ANSWER);
      return;
    }
    g_byte_array_append(c->answer, c->chunk, (guint)n);
    read_more(g_steal_pointer(&task), G_INPUT_STREAM(src));
    return;
  }
  JsonNode *node = NULL;
  if (c->answer->len) {
    node = vmlet_json_parse(c->what, (const char *)c->answer->data, (gssize)c->answer->len,
                            &error);
    if (!node) {
      g_task_return_error(task, error);
      return;
    }
  } else {
    node = json_node_new(JSON_NODE_NULL);
  }
  g_task_return_pointer(task, node, (GDestroyNotify)json_node_unref);
}

static void read_more(GTask *task, GInputStream *in)
{
  Call *c = g_task_get_task_data(task);
  g_input_stream_read_async(in, c->chunk, sizeof(c->chunk), G_PRIORITY_DEFAULT,
                            g_task_get_cancellable(task), on_read, task);
}

static void on_sent(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(GTask) task = data;
  Call *c = g_task_get_task_data(task);
  GError *error = NULL;
  g_autoptr(GInputStream) in = soup_session_send_finish(SOUP_SESSION(src), res, &error);
  if (!in) {
    g_prefix_error(&error, "%s: ", c->what);
    g_task_return_error(task, error);
    return;
  }
  /* Refused before it is read when the peer says it is too long. */
  goffset declared =
      soup_message_headers_get_content_length(soup_message_get_response_headers(c->msg));
  if (declared > VMLET_PEER_MAX_ANSWER) {
    g_task_return_new_error(task, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                            "%s: the answer of %" G_GOFFSET_FORMAT " bytes exceeds %d",
                            c->what, declared, VMLET_PEER_MAX_ANSWER);
    return;
  }
  read_more(g_steal_pointer(&task), in);
}

void vmlet_peer_client_request_async(VmletPeerClient *client, const VmletPeer *peer,
                                     guint default_port, const char *method, const char *path,
                                     JsonNode *body, guint timeout_s, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new(NULL, cancellable, callback, user_data);
  g_task_set_source_tag(task, vmlet_peer_client_request_async);
  Call *c = g_new0(Call, 1);
  c->answer = g_byte_array_new();
  g_task_set_task_data(task, c, call_free);
  guint port = peer->port ? peer->port : default_port;
  /* The URL names the peer, so GIO checks the peer's certificate against that name (DNS
   * SAN or CN); the connection goes to its address. A certificate of this CA that names
   * another node fails the handshake: nothing is sent to it. */
  g_autofree char *uri = g_strdup_printf("https://%s:%u%s", peer->name, port, path);
  c->what = g_strdup_printf("%s %s", method, uri);
  g_autoptr(GSocketConnectable) addr = g_network_address_new(peer->address, (guint16)port);
  c->session = soup_session_new_with_options("remote-connectable", addr, "tls-database",
                                             vmlet_tls_database(client->tls), "timeout",
                                             timeout_s, "idle-timeout", timeout_s, NULL);
  /* Peers are addressed directly, never through an HTTP proxy from the environment: the
   * default resolver (libproxy) would send node-to-node calls elsewhere, and under ASan its
   * C++ exceptions abort vmletd (CI, evict against a stalled peer). */
  soup_session_set_proxy_resolver(c->session, NULL);
  c->msg = soup_message_new(method, uri);
  if (!c->msg) {
    g_task_return_new_error(task, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: not a valid URL",
                            c->what);
    g_object_unref(task);
    return;
  }
  soup_message_set_tls_client_certificate(c->msg, vmlet_tls_client_certificate(client->tls));
  if (body) {
    char *text = json_to_string(body, FALSE);
    gsize len = strlen(text);
    g_autoptr(GBytes) bytes = g_bytes_new_take(text, len);
    soup_message_set_request_body_from_bytes(c->msg, "application/json", bytes);
  }
  soup_session_send_async(c->session, c->msg, G_PRIORITY_DEFAULT, cancellable, on_sent, task);
}

JsonNode *vmlet_peer_client_request_finish(GAsyncResult *result, guint *status, GError **error)
{
  GTask *task = G_TASK(result);
  JsonNode *node = g_task_propagate_pointer(task, error);
  if (node && status)
    *status = soup_message_get_status(((Call *)g_task_get_task_data(task))->msg);
  return node;
}
