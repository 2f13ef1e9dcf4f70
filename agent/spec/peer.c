#include "peer.h"

#include <string.h>

#include "fileio.h"
#include "jsonval.h"
#include "meta.h"
#include "strutil.h"

/* A peer is a name, an address and a few labels. */
#define PEER_MAX_BYTES (16 * 1024)

VmletPeer *vmlet_peer_ref(VmletPeer *peer)
{
  g_atomic_int_inc(&peer->refcount);
  return peer;
}

void vmlet_peer_unref(VmletPeer *peer)
{
  if (!peer || !g_atomic_int_dec_and_test(&peer->refcount))
    return;
  g_free(peer->name);
  g_free(peer->address);
  g_clear_pointer(&peer->labels, g_hash_table_unref);
  g_free(peer->source);
  g_free(peer);
}

/* An IP address, or a host name: what GIO can connect to, nothing a URL could be bent
 * with. */
static gboolean valid_address(const char *a)
{
  return g_hostname_is_ip_address(a) || vmlet_is_dns1123_subdomain(a);
}

VmletPeer *vmlet_peer_parse(JsonObject *root, VmletDiag *d)
{
  static const char *const known[] = {"name", "address", "port", "labels", NULL};
  guint errors_before = d->errors->len;
  const char *name = NULL, *address = NULL;
  gint64 port = 0;
  GHashTable *labels = NULL;
  jv_get_string(d, root, "", "name", JV_REQUIRED, 253, &name);
  jv_get_string(d, root, "", "address", JV_REQUIRED, 253, &address);
  jv_get_int(d, root, "", "port", JV_OPTIONAL, 1, 65535, &port);
  jv_get_string_map(d, root, "", "labels", 64, 63, &labels);
  jv_warn_unknown(d, root, "", known);
  if (name && !vmlet_is_dns1123_subdomain(name))
    vmlet_diag_error(d, "name", "expected a node name (DNS-1123 subdomain), found \"%s\"", name);
  if (address && !valid_address(address))
    vmlet_diag_error(d, "address", "expected an IP address or a host name, found \"%s\"",
                     address);
  if (d->errors->len != errors_before) {
    g_clear_pointer(&labels, g_hash_table_unref);
    return NULL;
  }
  VmletPeer *peer = g_new0(VmletPeer, 1);
  peer->refcount = 1;
  peer->name = g_strdup(name);
  peer->address = g_strdup(address);
  peer->port = (guint)port;
  peer->labels = labels ? labels : g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  return peer;
}

static VmletPeer *load_file(const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_bounded(path, PEER_MAX_BYTES, &data, &len, error))
    return NULL;
  g_autoptr(JsonNode) root = vmlet_json_parse(path, data, (gssize)len, error);
  if (!root)
    return NULL;
  g_autoptr(VmletDiag) d = vmlet_diag_new(path);
  VmletPeer *peer = vmlet_peer_parse(json_node_get_object(root), d);
  if (!vmlet_diag_check(d, error)) {
    vmlet_peer_unref(peer);
    return NULL;
  }
  peer->source = g_strdup(path);
  return peer;
}

GHashTable *vmlet_peers_load_dir(const char *dir, GPtrArray *problems)
{
  GHashTable *peers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify)vmlet_peer_unref);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
  const char *f;
  while (d && (f = g_dir_read_name(d)))
    if (f[0] != '.' && g_str_has_suffix(f, ".json"))
      g_ptr_array_add(files, g_build_filename(dir, f, NULL));
  g_ptr_array_sort(files, vmlet_compare_str_ptrs);
  for (guint i = 0; i < files->len; i++) {
    g_autoptr(GError) error = NULL;
    const char *path = files->pdata[i];
    if (g_hash_table_size(peers) >= VMLET_PEER_MAX) {
      g_ptr_array_add(problems, g_strdup_printf("%s: more than %d peers; the rest are ignored",
                                                dir, VMLET_PEER_MAX));
      break;
    }
    VmletPeer *peer = load_file(path, &error);
    if (!peer) {
      g_ptr_array_add(problems, g_strdup(error->message));
      continue;
    }
    VmletPeer *other = g_hash_table_lookup(peers, peer->name);
    if (other) {
      g_ptr_array_add(problems, g_strdup_printf("%s: peer \"%s\" is already defined in %s; "
                                                "this definition is ignored",
                                                path, peer->name, other->source));
      vmlet_peer_unref(peer);
      continue;
    }
    g_hash_table_insert(peers, g_strdup(peer->name), peer);
  }
  return peers;
}

GHashTable *vmlet_peer_placement_labels(const VmletPeer *peer)
{
  GHashTable *l = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, peer->labels);
  while (g_hash_table_iter_next(&it, &k, &v))
    g_hash_table_replace(l, g_strdup(k), g_strdup(v));
  g_hash_table_replace(l, g_strdup("kubernetes.io/hostname"), g_strdup(peer->name));
  return l;
}
