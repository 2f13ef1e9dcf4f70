/* vmletd's HTTP+JSON API on a unix socket (libsoup), so `curl --unix-socket` works.
 *
 *   GET    /healthz
 *   GET    /apis/virtualization.deckhouse.io/v1alpha2/virtualmachines
 *   GET    /apis/virtualization.deckhouse.io/v1alpha2/namespaces/NS/virtualmachines[/NAME]
 *   PUT    .../namespaces/NS/virtualmachines/NAME       apply: validate, write the drop-in
 *   PATCH  .../namespaces/NS/virtualmachines/NAME       RFC 7386 merge patch of the drop-in
 *   DELETE .../namespaces/NS/virtualmachines/NAME       remove the drop-in
 *   PUT    .../namespaces/NS/virtualmachines/NAME/pause|unpause   QMP stop / cont
 *   GET    .../namespaces/NS/virtualmachineoperations
 *   POST   .../namespaces/NS/virtualmachineoperations  {spec: {virtualMachineName, type, force}}
 *   GET    .../virtualmachineblockdeviceattachments (also ?watch=true)
 *   GET    .../namespaces/NS/virtualmachineblockdeviceattachments[/NAME] (also ?watch=true)
 *   PUT    .../namespaces/NS/virtualmachineblockdeviceattachments/NAME  attach (drop-in)
 *   DELETE .../namespaces/NS/virtualmachineblockdeviceattachments/NAME  detach
 *
 * These are the rows of the route table (routes.c); any other path is 404, another method
 * on one of them 405 with the methods it takes. Only root and members of the node's API
 * group may connect (SO_PEERCRED; the socket is mode 0660); others get 403 with the reason.
 * Request bodies are bounded. The layout of agent/api: server.c (socket, peer check,
 * dispatch), routes.c, handlers-*.c and watch.c (HTTP), actions*.c (the writes, no HTTP),
 * errors.c and respond.c (Status answers). */
#pragma once

#include <gio/gio.h>

#include "manager.h"

typedef struct _VmletApi VmletApi;

/* Listens on socket_path (replacing a stale socket). group may be NULL: root only. */
VmletApi *vmlet_api_new(VmletManager *mgr, const char *socket_path, const char *group,
                        GError **error);
void vmlet_api_free(VmletApi *api);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletApi, vmlet_api_free)
