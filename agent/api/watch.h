/* GET ...?watch=true: the current objects as ADDED events, then one
 * {"type": "ADDED"/"MODIFIED"/"DELETED", "object": ...} line per change, chunked, for as long
 * as the client stays. At most MAX_WATCHERS at once; a client that falls MAX_WATCH_BACKLOG
 * behind has its stream ended and re-lists, as with a Kubernetes API server. */
#pragma once

#include <libsoup/soup.h>

#include "manager.h"

typedef struct _VmletWatchHub VmletWatchHub;

typedef enum {
  VMLET_WATCH_VMS,
  VMLET_WATCH_ATTACHMENTS, /* VirtualMachineBlockDeviceAttachments */
} VmletWatchKind;

/* Follows mgr's signals until freed. */
VmletWatchHub *vmlet_watch_hub_new(VmletManager *mgr);
/* After the server: a watch message finishing while the server shuts down still finds its
 * watcher. */
void vmlet_watch_hub_free(VmletWatchHub *hub);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletWatchHub, vmlet_watch_hub_free)

/* Answers msg with a watch of kind in namespace ns (NULL: all), or fails with
 * VMLET_ERROR_UNAVAILABLE when MAX_WATCHERS are already watching. */
gboolean vmlet_watch_start(VmletWatchHub *hub, SoupServerMessage *msg, VmletWatchKind kind,
                           const char *ns, GError **error);
