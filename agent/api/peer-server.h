/* The peer API: HTTPS on [migration] listen-address:port for the other vmletd of the
 * cluster, with client certificates required. A caller is served only when its
 * certificate chains to the node's CA *and* names a configured peer (CN or DNS SAN); the
 * name it carries is who it is for the rest of the request.
 *
 *   GET  /peer/v1/node                        this node for a peer choosing a target
 *   POST /peer/v1/migrations                  prepare (201 with the ports)
 *   GET  /peer/v1/migrations/ID               a migration as this node sees it (heartbeat)
 *   POST /peer/v1/migrations/ID/commit        {generation}: resume here, own the VM
 *   POST /peer/v1/migrations/ID/abort         {reason}: give it up
 *
 * Answers are compact JSON, failures Kubernetes Status objects whose reason is DVP's
 * (TargetUnschedulable, TargetDiskError, OtherMigrationInProgress, Aborted, ...). */
#pragma once

#include <gio/gio.h>

#include "manager.h"

typedef struct _VmletPeerServer VmletPeerServer;

/* NULL without an error when migration is off on this node. */
VmletPeerServer *vmlet_peer_server_new(VmletManager *mgr, GError **error);
void vmlet_peer_server_free(VmletPeerServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletPeerServer, vmlet_peer_server_free)
