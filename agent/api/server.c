/* vmletd's API server: the unix socket, who may use it, the body bound, and dispatch through
 * the route table (routes.c) to the handlers. */
#include "api.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libsoup/soup.h>

#include "fileio.h"
#include "handlers.h"
#include "respond.h"
#include "routes.h"
#include "vmlet-error.h"
#include "watch.h"

/* A drop-in is the largest thing a request carries. */
#define MAX_BODY_BYTES VMLET_MAX_DROPIN_BYTES

struct _VmletApi {
  VmletManager *mgr;
  VmletWatchHub *watch;
  SoupServer *server;
  char *socket_path;
  gid_t group;
  gboolean have_group;
  guint trim_source;
};

/* SO_PEERCRED's gid, then the supplementary groups from /proc, as SO_PEERCRED carries only
 * one. */
static gboolean peer_in_group(VmletApi *api, const struct ucred *cred)
{
  if (cred->gid == api->group)
    return TRUE;
  g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)cred->pid);
  g_autofree char *status = NULL;
  if (!vmlet_read_file_bounded(path, 64 * 1024, &status, NULL, NULL))
    return FALSE;
  const char *groups = strstr(status, "\nGroups:");
  if (!groups)
    return FALSE;
  g_autofree char *line = g_strndup(groups + 8, strcspn(groups + 8, "\n"));
  g_auto(GStrv) ids = g_strsplit_set(line, " \t", -1);
  for (guint i = 0; ids[i]; i++)
    if (*ids[i] && (gid_t)g_ascii_strtoull(ids[i], NULL, 10) == api->group)
      return TRUE;
  return FALSE;
}

/* Root and members of the API group only, checked per request (the socket's mode 0660 is
 * the first fence, this the second). */
static gboolean peer_allowed(VmletApi *api, SoupServerMessage *msg, GError **error)
{
  GSocket *sock = soup_server_message_get_socket(msg);
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (!sock || getsockopt(g_socket_get_fd(sock), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_FORBIDDEN,
                        "cannot read the peer's credentials");
    return FALSE;
  }
  if (cred.uid == 0 || (api->have_group && peer_in_group(api, &cred)))
    return TRUE;
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_FORBIDDEN,
              "uid %u is not allowed to use vmletd: only root%s may", cred.uid,
              api->have_group ? " and members of the API group" : "");
  return FALSE;
}

void vmlet_handle_healthz(VmletCall *call)
{
  g_autoptr(JsonNode) n = json_from_string("{\"status\": \"ok\"}", NULL);
  vmlet_respond_json(call->msg, 200, n);
}

static void handle(SoupServer *server, SoupServerMessage *msg, const char *path,
                   GHashTable *query, gpointer data)
{
  VmletApi *api = data;
  g_autoptr(GError) error = NULL;
  if (!peer_allowed(api, msg, &error)) {
    vmlet_respond_error(msg, error);
    return;
  }
  if (soup_server_message_get_request_body(msg)->length > MAX_BODY_BYTES) {
    g_set_error_literal(&error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                        "request body larger than 1 MiB");
    vmlet_respond_error(msg, error);
    return;
  }
  gboolean watch = vmlet_route_wants_watch(query ? g_hash_table_lookup(query, "watch") : NULL);
  g_auto(VmletRouteArgs) args = {NULL, NULL};
  const VmletRoute *route =
      vmlet_route_match(soup_server_message_get_method(msg), path, watch, &args, &error);
  if (!route) {
    vmlet_respond_error(msg, error);
    return;
  }
  VmletCall call = {api->mgr, api->watch, msg, &args};
  route->handler(&call);
}

static gboolean on_trim(gpointer data)
{
  VmletApi *api = data;
  api->trim_source = 0;
  malloc_trim(0);
  return G_SOURCE_REMOVE;
}

/* A list of many VMs is built as a JSON tree and a string and then freed; without a trim
 * the freed pages stay in the daemon's RSS (100 VMs polled: +0.8 MiB). Once per second at
 * most, after the requests of that second. */
static void on_request_finished(SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  VmletApi *api = data;
  if (!api->trim_source)
    api->trim_source = g_timeout_add(1000, on_trim, api);
}

/* The socket at socket_path, listening, mode 0660 and in the API group (when there is
 * one). */
static GSocket *open_socket(VmletApi *api, GError **error)
{
  const char *socket_path = api->socket_path;
  g_autofree char *dir = g_path_get_dirname(socket_path);
  if (g_mkdir_with_parents(dir, 0750) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: %s", dir, g_strerror(errno));
    return NULL;
  }
  /* A socket left by a previous (killed) vmletd would make bind fail. */
  unlink(socket_path);
  g_autoptr(GSocket) sock = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM,
                                         G_SOCKET_PROTOCOL_DEFAULT, error);
  if (!sock)
    return NULL;
  g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(socket_path);
  /* Bind with a umask that leaves no window where others could connect. */
  mode_t old = umask(0117);
  gboolean bound = g_socket_bind(sock, addr, TRUE, error);
  umask(old);
  if (!bound || !g_socket_listen(sock, error)) {
    g_prefix_error(error, "%s: ", socket_path);
    return NULL;
  }
  if (api->have_group && chown(socket_path, 0, api->group) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: chown: %s", socket_path,
                g_strerror(errno));
    return NULL;
  }
  chmod(socket_path, 0660);
  return g_steal_pointer(&sock);
}

VmletApi *vmlet_api_new(VmletManager *mgr, const char *socket_path, const char *group,
                        GError **error)
{
  g_autoptr(VmletApi) api = g_new0(VmletApi, 1);
  api->mgr = g_object_ref(mgr);
  api->socket_path = g_strdup(socket_path);
  api->watch = vmlet_watch_hub_new(mgr);
  struct group *gr = group ? getgrnam(group) : NULL;
  if (gr) {
    api->group = gr->gr_gid;
    api->have_group = TRUE;
  }
  g_autoptr(GSocket) sock = open_socket(api, error);
  if (!sock)
    return NULL;
  api->server = soup_server_new("server-header", "vmletd", NULL);
  vmlet_respond_bound_bodies(api->server, MAX_BODY_BYTES);
  soup_server_add_handler(api->server, NULL, handle, api, NULL);
  g_signal_connect(api->server, "request-finished", G_CALLBACK(on_request_finished), api);
  if (!soup_server_listen_socket(api->server, sock, 0, error)) {
    g_prefix_error(error, "%s: ", socket_path);
    return NULL;
  }
  return g_steal_pointer(&api);
}

void vmlet_api_free(VmletApi *api)
{
  if (!api)
    return;
  g_clear_handle_id(&api->trim_source, g_source_remove);
  if (api->server) {
    g_signal_handlers_disconnect_by_data(api->server, api);
    soup_server_disconnect(api->server);
    g_object_unref(api->server);
  }
  vmlet_watch_hub_free(api->watch);
  if (api->socket_path)
    unlink(api->socket_path);
  g_free(api->socket_path);
  g_clear_object(&api->mgr);
  g_free(api);
}
