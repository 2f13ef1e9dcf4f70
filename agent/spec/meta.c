#include "meta.h"

#include <string.h>

#include "jsonval.h"

/* Kubernetes caps annotations at 256 KiB in total; labels values at 63 bytes. */
#define META_MAX_ENTRIES 256
#define LABEL_VALUE_MAX 63
#define ANNOTATION_VALUE_MAX (64 * 1024)

gboolean vmlet_is_dns1123_label(const char *s)
{
  gsize n = s ? strlen(s) : 0;
  if (n == 0 || n > 63)
    return FALSE;
  for (gsize i = 0; i < n; i++) {
    char c = s[i];
    gboolean alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && i > 0 && i < n - 1))
      return FALSE;
  }
  return TRUE;
}

gboolean vmlet_get_name(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                        int flags, const char **out)
{
  const char *s = NULL;
  if (!jv_get_string(d, obj, path, member, (JvFlags)flags, 253, &s))
    return FALSE;
  if (!vmlet_is_dns1123_label(s)) {
    g_autofree char *p = jv_path(path, member);
    g_autofree char *q = vmlet_quote_for_message(s);
    vmlet_diag_error(d, p,
                     "expected a DNS-1123 label (1-63 characters of a-z, 0-9 and '-', starting "
                     "and ending with a letter or digit), found %s",
                     q);
    return FALSE;
  }
  *out = s;
  return TRUE;
}

gboolean vmlet_meta_parse(VmletDiag *d, JsonObject *root, const char *kind,
                          const char *const *api_versions, VmletMeta *meta)
{
  guint errors_before = d->errors->len;
  guint idx;
  jv_get_enum(d, root, "", "apiVersion", JV_REQUIRED, api_versions, &idx);
  const char *k = NULL;
  if (jv_get_string(d, root, "", "kind", JV_REQUIRED, 64, &k) && !g_str_equal(k, kind)) {
    g_autofree char *q = vmlet_quote_for_message(k);
    vmlet_diag_error(d, "kind", "expected \"%s\", found %s", kind, q);
  }
  JsonObject *md = NULL;
  jv_get_object(d, root, "", "metadata", JV_REQUIRED, &md);
  const char *name = NULL, *ns = NULL, *uid = NULL;
  if (md) {
    vmlet_get_name(d, md, "metadata", "name", JV_REQUIRED, &name);
    vmlet_get_name(d, md, "metadata", "namespace", JV_OPTIONAL, &ns);
    jv_get_string(d, md, "metadata", "uid", JV_OPTIONAL, 64, &uid);
  }
  GHashTable *labels = NULL, *annotations = NULL;
  if (md) {
    jv_get_string_map(d, md, "metadata", "labels", META_MAX_ENTRIES, LABEL_VALUE_MAX, &labels);
    jv_get_string_map(d, md, "metadata", "annotations", META_MAX_ENTRIES, ANNOTATION_VALUE_MAX,
                      &annotations);
  }
  if (!labels)
    labels = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  if (!annotations)
    annotations = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  meta->name = g_strdup(name);
  meta->namespace = g_strdup(ns ? ns : VMLET_DEFAULT_NAMESPACE);
  meta->uid = g_strdup(uid);
  meta->labels = labels;
  meta->annotations = annotations;
  return d->errors->len == errors_before;
}

void vmlet_meta_clear(VmletMeta *meta)
{
  g_clear_pointer(&meta->name, g_free);
  g_clear_pointer(&meta->namespace, g_free);
  g_clear_pointer(&meta->uid, g_free);
  g_clear_pointer(&meta->labels, g_hash_table_unref);
  g_clear_pointer(&meta->annotations, g_hash_table_unref);
}

char *vmlet_timestamp(gint64 wall_us)
{
  g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(wall_us / G_USEC_PER_SEC);
  return g_date_time_format_iso8601(dt);
}

void vmlet_condition_add(JsonArray *conds, const char *type, gboolean ok, const char *reason,
                         const char *message)
{
  JsonObject *c = json_object_new();
  json_object_set_string_member(c, "type", type);
  json_object_set_string_member(c, "status", ok ? "True" : "False");
  if (reason)
    json_object_set_string_member(c, "reason", reason);
  if (message)
    json_object_set_string_member(c, "message", message);
  json_array_add_object_element(conds, c);
}

gboolean vmlet_is_dns1123_subdomain(const char *s)
{
  if (!s || !*s || strlen(s) > 253)
    return FALSE;
  g_auto(GStrv) labels = g_strsplit(s, ".", -1);
  for (guint i = 0; labels[i]; i++)
    if (!vmlet_is_dns1123_label(labels[i]))
      return FALSE;
  return TRUE;
}
