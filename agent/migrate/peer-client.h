/* Calls to a peer's API: HTTPS with this node's client certificate, the peer's certificate
 * checked against the node's CA *and* required to name the peer being called before a byte
 * of the request is sent (a certificate of the same CA issued to another node is refused),
 * JSON in and out, the answer bounded. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "peer.h"
#include "tls.h"

/* A peer's answer is a migration's state or a node's summary: a few KiB. */
#define VMLET_PEER_MAX_ANSWER (1024 * 1024)

typedef struct _VmletPeerClient VmletPeerClient;

/* tls is borrowed and outlives the client. */
VmletPeerClient *vmlet_peer_client_new(const VmletTls *tls);
void vmlet_peer_client_free(VmletPeerClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletPeerClient, vmlet_peer_client_free)

/* method path (e.g. "POST", "/peer/v1/migrations") with body (may be NULL) to peer, at
 * peer->port or default_port; fails after timeout_s without an answer. The answer is the
 * peer's JSON whatever its status (a Kubernetes Status on failure); *status is the HTTP
 * status. */
void vmlet_peer_client_request_async(VmletPeerClient *client, const VmletPeer *peer,
                                     guint default_port, const char *method, const char *path,
                                     JsonNode *body, guint timeout_s, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
JsonNode *vmlet_peer_client_request_finish(GAsyncResult *result, guint *status, GError **error);
