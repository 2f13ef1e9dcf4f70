/* The CLI's side of vmletd's API: HTTP over the unix socket (libsoup). */
#pragma once

#include <json-glib/json-glib.h>

typedef struct _VmletClient VmletClient;

VmletClient *vmlet_client_new(const char *socket_path);
void vmlet_client_free(VmletClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletClient, vmlet_client_free)

/* Sends a request; returns the JSON reply (any status) and sets *status. When vmletd
 * cannot be reached the error says so and names the socket. body may be NULL. */
JsonNode *vmlet_client_request(VmletClient *client, const char *method, const char *path,
                               const char *body, gsize body_len, guint *status,
                               GError **error);

/* Follows a watch stream (one JSON event per line) until vmletd closes it or the callback
 * returns FALSE. */
typedef gboolean (*VmletWatchFunc)(JsonObject *event, gpointer user_data);
gboolean vmlet_client_watch(VmletClient *client, const char *path, VmletWatchFunc func,
                            gpointer user_data, GError **error);
/* The same, giving up with an error when nothing arrives for idle_timeout_s seconds (0:
 * never). */
gboolean vmlet_client_watch_timeout(VmletClient *client, const char *path, guint idle_timeout_s,
                                    VmletWatchFunc func, gpointer user_data, GError **error);
