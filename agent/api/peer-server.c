#include "peer-server.h"

#include <string.h>

#include <libsoup/soup.h>

#include "errors.h"
#include "journal.h"
#include "jsonval.h"
#include "mig-error.h"
#include "migrations.h"
#include "respond.h"
#include "vmlet-error.h"

/* A prepare carries the VM, its disks' documents, its seed ISO and EFI variables. */
#define MAX_PEER_BODY (8 * 1024 * 1024)
#define PREFIX "/peer/v1/"

struct _VmletPeerServer {
  VmletManager *mgr;
  VmletMigrations *ms;
  SoupServer *server;
  gint64 last_refusal_us; /* monotonic: refusals are logged once a second at most */
};

typedef struct {
  VmletPeerServer *srv;
  SoupServerMessage *msg;
  const char *peer;  /* the caller, by its certificate */
  char *dn;          /* its distinguished name, for QEMU's tls-authz */
  const char *id;    /* the migration a path names, or NULL */
  JsonObject *body;  /* NULL without one */
} PeerCall;

/* ---- who is calling ---- */

static const char *caller(VmletPeerServer *srv, SoupServerMessage *msg, char **dn,
                          GError **error)
{
  GTlsCertificate *cert = soup_server_message_get_tls_peer_certificate(msg);
  if (!cert) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_FORBIDDEN, "a client certificate is required");
    return NULL;
  }
  /* GIO checked the chain against the CA during the handshake; GnuTLS once more, with the
   * same rules as the node's own certificates (validity, CA). */
  if (soup_server_message_get_tls_peer_certificate_errors(msg) != 0 ||
      !vmlet_tls_verify(vmlet_migrations_tls(srv->ms), cert, error)) {
    if (error && !*error)
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_FORBIDDEN,
                  "the client certificate does not chain to this node's CA");
    else if (error)
      (*error)->code = VMLET_ERROR_FORBIDDEN;
    return NULL;
  }
  g_autoptr(GPtrArray) peers = vmlet_migrations_peers(srv->ms);
  for (guint i = 0; i < peers->len; i++) {
    VmletPeer *p = peers->pdata[i];
    if (vmlet_tls_certificate_names(cert, p->name)) {
      *dn = vmlet_tls_certificate_dn(cert, error);
      return *dn ? vmlet_migrations_peer(srv->ms, p->name)->name : NULL;
    }
  }
  g_autofree char *subject = vmlet_tls_certificate_dn(cert, NULL);
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_FORBIDDEN,
              "the client certificate (%s) names no configured peer (<config-dir>/peers.d)",
              subject ? subject : "no subject");
  return NULL;
}

/* ---- handlers ---- */

static void answer(SoupServerMessage *msg, guint status, JsonNode *node, const GError *error)
{
  if (node)
    vmlet_respond_json(msg, status, node);
  else
    vmlet_respond_error(msg, error);
}

static void handle_node(PeerCall *c)
{
  g_autoptr(JsonNode) n = vmlet_manager_node_summary(c->srv->mgr);
  vmlet_respond_json(c->msg, 200, n);
}

static void on_prepared(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(SoupServerMessage) msg = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) n = vmlet_manager_migration_prepare_finish(VMLET_MANAGER(src), res, &error);
  answer(msg, 201, n, error);
  soup_server_message_unpause(msg);
}

static void handle_prepare(PeerCall *c)
{
  soup_server_message_pause(c->msg);
  vmlet_manager_migration_prepare(c->srv->mgr, c->body, c->peer, c->dn, on_prepared,
                                  g_object_ref(c->msg));
}

static void handle_describe(PeerCall *c)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) n = vmlet_manager_migration_describe(c->srv->mgr, c->id, c->peer, &error);
  answer(c->msg, 200, n, error);
}

static void on_committed(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(SoupServerMessage) msg = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) n = vmlet_manager_migration_commit_finish(VMLET_MANAGER(src), res, &error);
  answer(msg, 200, n, error);
  soup_server_message_unpause(msg);
}

static void handle_commit(PeerCall *c)
{
  gint64 generation = jv_int_at(c->body, "generation", -1);
  soup_server_message_pause(c->msg);
  vmlet_manager_migration_commit(c->srv->mgr, c->id, c->peer, (guint64)MAX(generation, 0),
                                 on_committed, g_object_ref(c->msg));
}

static void handle_abort(PeerCall *c)
{
  g_autoptr(GError) error = NULL;
  const char *why = jv_string_at(c->body, "reason");
  g_autofree char *reason = g_strdup_printf("the source gave it up: %s",
                                            why ? why : "no reason given");
  if (vmlet_manager_migration_abort(c->srv->mgr, c->id, c->peer, reason, &error))
    vmlet_respond_status(c->msg, 200, "Aborted", reason);
  else
    vmlet_respond_error(c->msg, error);
}

/* ---- routes: {method, path after /peer/v1/ with * for a migration id, needs a body} ---- */

static const struct {
  const char *method;
  const char *path;
  gboolean body;
  void (*handler)(PeerCall *c);
} routes[] = {
    {"GET", "node", FALSE, handle_node},
    {"POST", "migrations", TRUE, handle_prepare},
    {"GET", "migrations/*", FALSE, handle_describe},
    {"POST", "migrations/*/commit", TRUE, handle_commit},
    {"POST", "migrations/*/abort", FALSE, handle_abort},
};

/* Whether path matches pattern; *id gets what "*" stands for (a migration id). */
static gboolean match(const char *pattern, const char *path, char **id)
{
  g_auto(GStrv) want = g_strsplit(pattern, "/", -1), got = g_strsplit(path, "/", -1);
  if (g_strv_length(want) != g_strv_length(got))
    return FALSE;
  for (guint i = 0; want[i]; i++) {
    if (g_str_equal(want[i], "*")) {
      if (!vmlet_mig_id_valid(got[i]))
        return FALSE;
      g_free(*id);
      *id = g_strdup(got[i]);
    } else if (!g_str_equal(want[i], got[i])) {
      return FALSE;
    }
  }
  return TRUE;
}

static void handle(SoupServer *server, SoupServerMessage *msg, const char *path,
                   GHashTable *query, gpointer data)
{
  VmletPeerServer *srv = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *dn = NULL, *id = NULL;
  PeerCall c = {.srv = srv, .msg = msg};
  c.peer = caller(srv, msg, &dn, &error);
  if (!c.peer) {
    vmlet_respond_error(msg, error);
    return;
  }
  c.dn = dn;
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  if (body->length > MAX_PEER_BODY) {
    vmlet_respond_status(msg, 413, "RequestEntityTooLarge", "request body larger than 8 MiB");
    return;
  }
  const char *method = soup_server_message_get_method(msg);
  const char *tail = g_str_has_prefix(path, PREFIX) ? path + strlen(PREFIX) : NULL;
  for (gsize i = 0; tail && i < G_N_ELEMENTS(routes); i++) {
    if (!g_str_equal(routes[i].method, method) || !match(routes[i].path, tail, &id))
      continue;
    c.id = id;
    g_autoptr(JsonNode) root = NULL;
    if (body->length) {
      g_autoptr(GBytes) bytes = soup_message_body_flatten(body);
      gsize len = 0;
      const char *text = g_bytes_get_data(bytes, &len);
      root = vmlet_json_parse("request", text, (gssize)len, &error);
      if (!root) {
        vmlet_respond_status(msg, 400, "BadRequest", error->message);
        return;
      }
      c.body = json_node_get_object(root);
    } else if (routes[i].body) {
      vmlet_respond_status(msg, 400, "BadRequest", "a JSON body is required");
      return;
    }
    routes[i].handler(&c);
    return;
  }
  vmlet_respond_status(msg, 404, "NotFound", "unknown path");
}

/* ---- the server ---- */

/* GIO verifies a client's chain against the CA during the handshake and then asks whether
 * to go on (glib-networking 2.74 asks even when it found nothing wrong; unanswered, the
 * handshake fails); libsoup forwards the question to the connection's first message, made
 * before the handshake for that. A certificate that does not chain, or names no configured
 * peer, ends the connection before any request is read. */
/* A refused certificate is logged, at most once a second: an operator sees why a peer is
 * turned away, a scanner cannot flood the journal. */
static gboolean refuse(VmletPeerServer *srv, SoupServerMessage *msg, GTlsCertificate *cert,
                       const char *why)
{
  gint64 now = g_get_monotonic_time();
  if (now - srv->last_refusal_us < G_USEC_PER_SEC)
    return FALSE;
  srv->last_refusal_us = now;
  g_autofree char *dn = cert ? vmlet_tls_certificate_dn(cert, NULL) : NULL;
  GSocketAddress *remote = soup_server_message_get_remote_address(msg);
  g_autofree char *from = remote && G_IS_INET_SOCKET_ADDRESS(remote)
                              ? g_inet_address_to_string(g_inet_socket_address_get_address(
                                    G_INET_SOCKET_ADDRESS(remote)))
                              : g_strdup("?");
  g_warning("peer API: refused a connection from %s (certificate \"%s\"): %s", from,
            dn ? dn : "unreadable", why);
  return FALSE;
}

static gboolean on_accept_certificate(SoupServerMessage *msg, GTlsCertificate *cert,
                                      GTlsCertificateFlags errors, gpointer data)
{
  VmletPeerServer *srv = data;
  g_autoptr(GError) error = NULL;
  if (errors != 0 || !vmlet_tls_verify(vmlet_migrations_tls(srv->ms), cert, &error))
    return refuse(srv, msg, cert, error ? error->message : "it does not chain to the CA");
  g_autoptr(GPtrArray) peers = vmlet_migrations_peers(srv->ms);
  for (guint i = 0; i < peers->len; i++)
    if (vmlet_tls_certificate_names(cert, ((VmletPeer *)peers->pdata[i])->name))
      return TRUE;
  return refuse(srv, msg, cert, "it names no peer in peers.d");
}

static void on_request_started(SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  g_signal_connect(msg, "accept-certificate", G_CALLBACK(on_accept_certificate), data);
}

VmletPeerServer *vmlet_peer_server_new(VmletManager *mgr, GError **error)
{
  VmletMigrations *ms = vmlet_manager_migrations(mgr);
  if (!ms)
    return NULL;
  const VmletNode *node = vmlet_migrations_node(ms);
  const VmletTls *tls = vmlet_migrations_tls(ms);
  g_autoptr(VmletPeerServer) srv = g_new0(VmletPeerServer, 1);
  srv->mgr = g_object_ref(mgr);
  srv->ms = ms;
  srv->server = soup_server_new("server-header", "vmletd", NULL);
  soup_server_set_tls_certificate(srv->server, vmlet_tls_server_certificate(tls));
  soup_server_set_tls_database(srv->server, vmlet_tls_database(tls));
  soup_server_set_tls_auth_mode(srv->server, G_TLS_AUTHENTICATION_REQUIRED);
  vmlet_respond_bound_bodies(srv->server, MAX_PEER_BODY);
  soup_server_add_handler(srv->server, NULL, handle, srv, NULL);
  g_signal_connect(srv->server, "request-started", G_CALLBACK(on_request_started), srv);
  g_autoptr(GInetAddress) ia = g_inet_address_new_from_string(node->migration.listen_address);
  g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(ia, (guint16)node->migration.port);
  if (!soup_server_listen(srv->server, sa, SOUP_SERVER_LISTEN_HTTPS, error)) {
    g_prefix_error(error, "the peer API on [%s]:%u: ", node->migration.listen_address,
                   node->migration.port);
    return NULL;
  }
  return g_steal_pointer(&srv);
}

void vmlet_peer_server_free(VmletPeerServer *srv)
{
  if (!srv)
    return;
  if (srv->server) {
    soup_server_disconnect(srv->server);
    g_object_unref(srv->server);
  }
  g_clear_object(&srv->mgr);
  g_free(srv);
}
