#include "migrations.h"

#include <errno.h>
#include <string.h>

#include "vmlet-error.h"

struct _VmletMigrations {
  const VmletNode *node;
  VmletTls *tls;
  VmletPeerClient *client;
  GHashTable *peers;   /* name -> VmletPeer * */
  GHashTable *ports;   /* GUINT_TO_POINTER(port) taken */
  GHashTable *active;  /* id -> GObject * (not owned) */
  guint in_use[2];     /* [0] inbound, [1] outbound */
};

VmletMigrations *vmlet_migrations_new(const VmletNode *node, GError **error)
{
  if (!node->migration.enabled)
    return NULL;
  g_autoptr(VmletTls) tls = vmlet_tls_load(node->migration.cert_dir, node->name, error);
  if (!tls) {
    g_prefix_error(error, "migration is not enabled: ");
    return NULL;
  }
  VmletMigrations *m = g_new0(VmletMigrations, 1);
  m->node = node;
  m->tls = g_steal_pointer(&tls);
  m->client = vmlet_peer_client_new(m->tls);
  m->peers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                   (GDestroyNotify)vmlet_peer_unref);
  m->ports = g_hash_table_new(g_direct_hash, g_direct_equal);
  m->active = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  return m;
}

void vmlet_migrations_free(VmletMigrations *m)
{
  if (!m)
    return;
  vmlet_peer_client_free(m->client);
  vmlet_tls_free(m->tls);
  g_hash_table_unref(m->peers);
  g_hash_table_unref(m->ports);
  g_hash_table_unref(m->active);
  g_free(m);
}

void vmlet_migrations_load_peers(VmletMigrations *m, GPtrArray *problems)
{
  g_autofree char *dir = g_build_filename(m->node->config_dir, "peers.d", NULL);
  g_hash_table_unref(m->peers);
  m->peers = vmlet_peers_load_dir(dir, problems);
  /* This node is no peer of its own. */
  g_hash_table_remove(m->peers, m->node->name);
}

VmletPeer *vmlet_migrations_peer(VmletMigrations *m, const char *name)
{
  return m && name ? g_hash_table_lookup(m->peers, name) : NULL;
}

static gint by_name(gconstpointer a, gconstpointer b)
{
  return strcmp((*(VmletPeer *const *)a)->name, (*(VmletPeer *const *)b)->name);
}

GPtrArray *vmlet_migrations_peers(VmletMigrations *m)
{
  GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_peer_unref);
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, m->peers);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_ptr_array_add(out, vmlet_peer_ref(v));
  g_ptr_array_sort(out, by_name);
  return out;
}

const VmletNode *vmlet_migrations_node(VmletMigrations *m)
{
  return m->node;
}

const VmletTls *vmlet_migrations_tls(VmletMigrations *m)
{
  return m->tls;
}

VmletPeerClient *vmlet_migrations_client(VmletMigrations *m)
{
  return m->client;
}

gboolean vmlet_migrations_take_slot(VmletMigrations *m, gboolean outbound, GError **error)
{
  guint limit = outbound ? m->node->migration.outbound : m->node->migration.inbound;
  if (m->in_use[outbound] >= limit) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_EXISTS,
                "node %s already runs %u %s migration%s ([migration] %s=%u)", m->node->name,
                m->in_use[outbound], outbound ? "outgoing" : "incoming", limit == 1 ? "" : "s",
                outbound ? "outbound" : "inbound", limit);
    return FALSE;
  }
  m->in_use[outbound]++;
  return TRUE;
}

void vmlet_migrations_give_slot(VmletMigrations *m, gboolean outbound)
{
  if (m && m->in_use[outbound])
    m->in_use[outbound]--;
}

guint vmlet_migrations_in_use(VmletMigrations *m, gboolean outbound)
{
  return m->in_use[outbound];
}

/* Whether port can be bound on the listen address now (another program may hold it). */
static gboolean port_free(const char *address, guint port)
{
  g_autoptr(GInetAddress) ia = g_inet_address_new_from_string(address);
  if (!ia)
    return FALSE;
  g_autoptr(GSocket) s = g_socket_new(g_inet_address_get_family(ia), G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(ia, (guint16)port);
  return s && g_socket_bind(s, sa, TRUE, NULL);
}

gboolean vmlet_migrations_take_ports(VmletMigrations *m, guint n, guint *out, GError **error)
{
  const VmletMigrationSettings *cfg = &m->node->migration;
  guint got = 0;
  for (guint p = cfg->stream_port_min; p <= cfg->stream_port_max && got < n; p++) {
    if (g_hash_table_contains(m->ports, GUINT_TO_POINTER(p)) ||
        !port_free(cfg->listen_address, p))
      continue;
    g_hash_table_add(m->ports, GUINT_TO_POINTER(p));
    out[got++] = p;
  }
  if (got == n)
    return TRUE;
  vmlet_migrations_give_ports(m, out, got);
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_EXISTS,
              "no %u free ports in [migration] stream-ports=%u-%u on %s", n,
              cfg->stream_port_min, cfg->stream_port_max, cfg->listen_address);
  return FALSE;
}

void vmlet_migrations_give_ports(VmletMigrations *m, const guint *ports, guint n)
{
  for (guint i = 0; m && i < n; i++)
    g_hash_table_remove(m->ports, GUINT_TO_POINTER(ports[i]));
}

void vmlet_migrations_register(VmletMigrations *m, const char *id, GObject *carrier)
{
  if (m)
    g_hash_table_replace(m->active, g_strdup(id), carrier);
}

void vmlet_migrations_unregister(VmletMigrations *m, const char *id)
{
  if (m)
    g_hash_table_remove(m->active, id);
}

GObject *vmlet_migrations_lookup(VmletMigrations *m, const char *id)
{
  return m ? g_hash_table_lookup(m->active, id) : NULL;
}
