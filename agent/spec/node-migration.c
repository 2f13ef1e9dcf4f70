/* The [migration] group of vmlet.conf:
 *
 *   [migration]
 *   listen-address=10.0.0.1       # the peer API (HTTPS, client certificates); default ::
 *   port=7443                     # and the port peers default to
 *   cert-dir=/etc/pki/vmlet       # ca-cert.pem, server-cert.pem/-key.pem, client-*
 *   stream-ports=49152-49215      # QEMU's migration streams and NBD servers
 *   bandwidth=1Gi                 # bytes per second per migration
 *   downtime-limit=300            # ms; raised within the VM's liveMigrationPolicy
 *   outbound=2                    # migrations at once from this node (DVP: 2)
 *   inbound=1                     # and to it (DVP: 1)
 *   progress-timeout=150          # s without progress before escalating (KubeVirt: 150)
 *   multifd-channels=0            # 0: one TLS stream
 */
#include "node.h"

#include <stdlib.h>
#include <string.h>

#include "quantity.h"
#include "vmlet-error.h"

void vmlet_node_migration_defaults(VmletMigrationSettings *m)
{
  *m = (VmletMigrationSettings){
      .listen_address = g_strdup("::"),
      .port = 7443,
      .cert_dir = g_strdup("/etc/pki/vmlet"),
      .stream_port_min = 49152,
      .stream_port_max = 49215,
      /* QEMU's own default is 32 MiB/s, which a busy guest out-dirties. */
      .bandwidth = G_GUINT64_CONSTANT(1) << 30,
      .downtime_ms = 300,
      .outbound = 2,
      .inbound = 1,
      .progress_timeout_s = 150,
  };
}

void vmlet_node_migration_clear(VmletMigrationSettings *m)
{
  g_clear_pointer(&m->listen_address, g_free);
  g_clear_pointer(&m->cert_dir, g_free);
}

/* Integer settings: name, where, bounds. */
static const struct {
  const char *key;
  gsize offset;
  guint min, max;
} uint_keys[] = {
    {"port", G_STRUCT_OFFSET(VmletMigrationSettings, port), 1, 65535},
    {"downtime-limit", G_STRUCT_OFFSET(VmletMigrationSettings, downtime_ms), 1, 60000},
    {"outbound", G_STRUCT_OFFSET(VmletMigrationSettings, outbound), 1, 16},
    {"inbound", G_STRUCT_OFFSET(VmletMigrationSettings, inbound), 1, 16},
    {"progress-timeout", G_STRUCT_OFFSET(VmletMigrationSettings, progress_timeout_s), 1, 86400},
    {"multifd-channels", G_STRUCT_OFFSET(VmletMigrationSettings, multifd_channels), 0, 16},
};

static const char *const other_keys[] = {"listen-address", "cert-dir", "stream-ports",
                                         "bandwidth", NULL};

gboolean vmlet_node_migration_known(const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS(uint_keys); i++)
    if (g_str_equal(key, uint_keys[i].key))
      return TRUE;
  return g_strv_contains(other_keys, key);
}

static gboolean bad(GError **error, const char *path, const char *key, const char *expected,
                    const char *found)
{
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
              "%s: [migration] %s: expected %s, found \"%s\"", path, key, expected, found);
  return FALSE;
}

static char *get(GKeyFile *kf, const char *key)
{
  char *v = g_key_file_get_string(kf, "migration", key, NULL);
  return v ? g_strstrip(v) : NULL;
}

static gboolean parse_uint(const char *v, guint min, guint max, guint *out)
{
  char *end = NULL;
  guint64 n = g_ascii_strtoull(v, &end, 10);
  if (!*v || *end || n < min || n > max)
    return FALSE;
  *out = (guint)n;
  return TRUE;
}

static gboolean load_ports(VmletMigrationSettings *m, const char *path, const char *v,
                           GError **error)
{
  g_auto(GStrv) ends = g_strsplit(v, "-", 3);
  guint lo = 0, hi = 0;
  if (g_strv_length(ends) != 2 || !parse_uint(ends[0], 1024, 65535, &lo) ||
      !parse_uint(ends[1], 1024, 65535, &hi) || hi < lo + 1)
    return bad(error, path, "stream-ports", "a range of at least 2 ports above 1023 such as "
               "49152-49215", v);
  m->stream_port_min = lo;
  m->stream_port_max = hi;
  return TRUE;
}

gboolean vmlet_node_migration_load(VmletMigrationSettings *m, const char *path, GKeyFile *kf,
                                   GError **error)
{
  if (!g_key_file_has_group(kf, "migration"))
    return TRUE;
  m->enabled = TRUE;
  for (gsize i = 0; i < G_N_ELEMENTS(uint_keys); i++) {
    g_autofree char *v = get(kf, uint_keys[i].key);
    guint *slot = G_STRUCT_MEMBER_P(m, uint_keys[i].offset);
    if (v && !parse_uint(v, uint_keys[i].min, uint_keys[i].max, slot)) {
      g_autofree char *range = g_strdup_printf("an integer from %u to %u", uint_keys[i].min,
                                               uint_keys[i].max);
      return bad(error, path, uint_keys[i].key, range, v);
    }
  }
  g_autofree char *listen = get(kf, "listen-address");
  if (listen && !g_hostname_is_ip_address(listen))
    return bad(error, path, "listen-address", "an IP address", listen);
  if (listen) {
    g_free(m->listen_address);
    m->listen_address = g_steal_pointer(&listen);
  }
  g_autofree char *dir = get(kf, "cert-dir");
  if (dir && (dir[0] != '/' || strchr(dir, ',') || strlen(dir) > 512))
    return bad(error, path, "cert-dir", "an absolute path without commas", dir);
  if (dir) {
    g_free(m->cert_dir);
    m->cert_dir = g_steal_pointer(&dir);
  }
  g_autofree char *ports = get(kf, "stream-ports");
  if (ports && !load_ports(m, path, ports, error))
    return FALSE;
  g_autofree char *bw = get(kf, "bandwidth");
  const char *why = NULL;
  if (bw && (!vmlet_quantity_parse_bytes(bw, &m->bandwidth, &why) || m->bandwidth < (1 << 20)))
    return bad(error, path, "bandwidth", "bytes per second as a quantity of at least 1Mi, "
               "such as 1Gi", bw);
  return TRUE;
}
