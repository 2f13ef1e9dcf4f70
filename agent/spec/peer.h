/* Migration peers: the other nodes this node may send VMs to and accept them from.
 * Configured, not discovered (when there is a cluster, it is Kubernetes'): one drop-in per
 * peer, <config-dir>/peers.d/NAME.json:
 *
 *   {"name": "hv-2", "address": "10.0.0.2", "port": 7443, "labels": {"zone": "a"}}
 *
 * name is the peer's node name, which its certificates must carry (CN or DNS SAN): that
 * name, not its address, is what authorises it. port defaults to the node's own
 * [migration] port; labels are what a VM's migration nodeSelector is matched against. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"

#define VMLET_PEER_MAX 256

typedef struct {
  gint refcount;
  char *name;
  char *address; /* an IP address or a host name */
  guint port;    /* 0: the node's [migration] port */
  GHashTable *labels;
  char *source;  /* the drop-in */
} VmletPeer;

VmletPeer *vmlet_peer_ref(VmletPeer *peer);
void vmlet_peer_unref(VmletPeer *peer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletPeer, vmlet_peer_unref)

/* The peer's labels as placement sees them: its own, and its name as
 * kubernetes.io/hostname, so a nodeSelector can name a node as in Kubernetes. */
GHashTable *vmlet_peer_placement_labels(const VmletPeer *peer);

/* One peer from its JSON, errors in d at their JSON paths. */
VmletPeer *vmlet_peer_parse(JsonObject *root, VmletDiag *d);
/* Every peer of dir (name -> VmletPeer *), sorted reading; a drop-in that does not load,
 * or names a peer another one already named, is skipped with its problem in problems
 * (char *), never disturbing the others. A missing dir is no peers. */
GHashTable *vmlet_peers_load_dir(const char *dir, GPtrArray *problems);
