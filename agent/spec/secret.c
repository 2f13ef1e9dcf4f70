#include "secret.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonval.h"
#include "vmlet-error.h"

static const char *const api_versions[] = {"v1", NULL};

VmletSecret *vmlet_secret_ref(VmletSecret *s)
{
  g_atomic_int_inc(&s->refcount);
  return s;
}

void vmlet_secret_unref(VmletSecret *s)
{
  if (!s || !g_atomic_int_dec_and_test(&s->refcount))
    return;
  vmlet_meta_clear(&s->meta);
  g_free(s->type);
  g_free(s->refused);
  if (s->data)
    g_hash_table_unref(s->data);
  g_free(s);
}

/* Kubernetes Secret keys: [-._a-zA-Z0-9]+, at most 253. */
static gboolean valid_key(const char *k)
{
  gsize n = strlen(k);
  if (n == 0 || n > 253)
    return FALSE;
  for (const char *c = k; *c; c++)
    if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_' && *c != '.')
      return FALSE;
  return TRUE;
}

/* Strict base64: g_base64_decode silently skips garbage, which would turn a typo into
 * corrupted user-data. */
static GBytes *decode_base64(const char *text)
{
  gsize n = strlen(text);
  if (n % 4 != 0)
    return NULL;
  for (gsize i = 0; i < n; i++) {
    char c = text[i];
    gboolean pad_ok = c == '=' && (i >= n - 2) && (i == n - 1 || text[n - 1] == '=');
    if (!g_ascii_isalnum(c) && c != '+' && c != '/' && !pad_ok)
      return NULL;
  }
  gsize len = 0;
  guchar *raw = g_base64_decode(text, &len);
  return g_bytes_new_take(raw, len);
}

VmletSecret *vmlet_secret_parse(JsonObject *root, VmletDiag *d)
{
  g_autoptr(VmletSecret) s = g_new0(VmletSecret, 1);
  s->refcount = 1;
  s->data = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
  guint before = d->errors->len;
  vmlet_meta_parse(d, root, "Secret", api_versions, &s->meta);
  const char *type = NULL;
  if (jv_get_string(d, root, "", "type", JV_REQUIRED, 253, &type))
    s->type = g_strdup(type);
  gsize total = 0;
  static const char *const members[] = {"data", "stringData"};
  for (gsize m = 0; m < G_N_ELEMENTS(members); m++) {
    JsonObject *map = NULL;
    if (!jv_get_object(d, root, "", members[m], JV_OPTIONAL, &map))
      continue;
    JsonObjectIter it;
    const char *key;
    JsonNode *value;
    json_object_iter_init(&it, map);
    while (json_object_iter_next(&it, &key, &value)) {
      g_autofree char *p = jv_path(members[m], key);
      if (!valid_key(key)) {
        vmlet_diag_error(d, members[m], "expected keys of [-._a-zA-Z0-9] (at most 253), found "
                                        "an invalid key");
        continue;
      }
      if (!JSON_NODE_HOLDS_VALUE(value) || json_node_get_value_type(value) != G_TYPE_STRING) {
        vmlet_diag_error(d, p, "expected a string");
        continue;
      }
      const char *text = json_node_get_string(value);
      GBytes *bytes = m == 0 ? decode_base64(text) : g_bytes_new(text, strlen(text));
      if (!bytes) {
        /* Never quote the value: it is secret. */
        vmlet_diag_error(d, p, "expected base64 (RFC 4648, padded), found invalid base64");
        continue;
      }
      total += g_bytes_get_size(bytes);
      g_hash_table_replace(s->data, g_strdup(key), bytes);
    }
  }
  if (total > VMLET_SECRET_MAX_BYTES)
    vmlet_diag_error(d, "data", "expected at most 1 MiB of data in total, found %" G_GSIZE_FORMAT
                                " bytes", total);
  if (d->errors->len != before)
    return NULL;
  return g_steal_pointer(&s);
}

VmletSecret *vmlet_secret_parse_refused(JsonObject *root, VmletDiag *d, const char *why)
{
  g_autoptr(VmletSecret) s = g_new0(VmletSecret, 1);
  s->refcount = 1;
  s->data = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
  s->refused = g_strdup(why);
  if (!vmlet_meta_parse(d, root, "Secret", api_versions, &s->meta))
    return NULL;
  return g_steal_pointer(&s);
}

gboolean vmlet_secret_check_stat(const char *path, const struct stat *st, GError **error)
{
  if (st->st_mode & 077) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: mode %04o lets others read a Secret; expected 0600 or 0400 (chmod 600)",
                path, (unsigned)(st->st_mode & 07777));
    return FALSE;
  }
  if (st->st_uid != 0 && st->st_uid != geteuid()) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: owned by uid %u; expected root or vmletd's user to own a Secret (chown)",
                path, (unsigned)st->st_uid);
    return FALSE;
  }
  return TRUE;
}
