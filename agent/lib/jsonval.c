#include "jsonval.h"

#include <string.h>

#include "vmlet-error.h"

/* Messages quote what was found; a 2 KiB string pasted into an error helps nobody. */
#define QUOTE_MAX_CHARS 64

char *vmlet_quote_for_message(const char *s)
{
  GString *out = g_string_new("\"");
  glong n = 0;
  for (const char *p = s; *p; p = g_utf8_next_char(p), n++) {
    if (n == QUOTE_MAX_CHARS) {
      g_string_append(out, "...");
      break;
    }
    gunichar c = g_utf8_get_char_validated(p, -1);
    if (c == (gunichar)-1 || c == (gunichar)-2) {
      g_string_append(out, "\\ufffd");
      break;
    }
    switch (c) {
    case '"': g_string_append(out, "\\\""); break;
    case '\\': g_string_append(out, "\\\\"); break;
    case '\n': g_string_append(out, "\\n"); break;
    case '\t': g_string_append(out, "\\t"); break;
    case '\r': g_string_append(out, "\\r"); break;
    default:
      if (c < 0x20)
        g_string_append_printf(out, "\\u%04x", c);
      else
        g_string_append_unichar(out, c);
    }
  }
  g_string_append_c(out, '"');
  return g_string_free(out, FALSE);
}

char *vmlet_json_describe(JsonNode *node)
{
  if (!node || JSON_NODE_HOLDS_NULL(node))
    return g_strdup("null");
  switch (json_node_get_node_type(node)) {
  case JSON_NODE_OBJECT:
    return g_strdup("an object");
  case JSON_NODE_ARRAY:
    return g_strdup_printf("an array of %u", json_array_get_length(json_node_get_array(node)));
  case JSON_NODE_NULL:
    return g_strdup("null");
  case JSON_NODE_VALUE:
    break;
  }
  GType t = json_node_get_value_type(node);
  if (t == G_TYPE_STRING)
    return vmlet_quote_for_message(json_node_get_string(node));
  if (t == G_TYPE_INT64)
    return g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(node));
  if (t == G_TYPE_DOUBLE)
    return g_strdup_printf("%g", json_node_get_double(node));
  if (t == G_TYPE_BOOLEAN)
    return g_strdup(json_node_get_boolean(node) ? "true" : "false");
  return g_strdup("a value");
}

/* Rejects nesting beyond VMLET_JSON_MAX_DEPTH without parsing, tracking strings so that
 * brackets inside them do not count. Reports line and column of the offending bracket. */
static gboolean check_depth(const char *source, const char *data, gsize len, GError **error)
{
  int depth = 0;
  gboolean in_string = FALSE, escaped = FALSE;
  guint line = 1, col = 0;
  for (gsize i = 0; i < len; i++) {
    char c = data[i];
    col++;
    if (c == '\n') {
      line++;
      col = 0;
    }
    if (in_string) {
      if (escaped)
        escaped = FALSE;
      else if (c == '\\')
        escaped = TRUE;
      else if (c == '"')
        in_string = FALSE;
      continue;
    }
    if (c == '"') {
      in_string = TRUE;
    } else if (c == '{' || c == '[') {
      if (++depth > VMLET_JSON_MAX_DEPTH) {
        g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE,
                    "%s:%u:%u: JSON nested deeper than %d levels", source, line, col,
                    VMLET_JSON_MAX_DEPTH);
        return FALSE;
      }
    } else if (c == '}' || c == ']') {
      if (depth > 0)
        depth--;
    }
  }
  return TRUE;
}

JsonNode *vmlet_json_parse(const char *source, const char *data, gssize len, GError **error)
{
  gsize n = len < 0 ? strlen(data) : (gsize)len;
  if (n > 16 * 1024 * 1024) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE, "%s: document too large", source);
    return NULL;
  }
  if (memchr(data, '\0', n)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: expected JSON text, found a NUL byte", source);
    return NULL;
  }
  if (!check_depth(source, data, n, error))
    return NULL;
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  g_autoptr(GError) local = NULL;
  if (!json_parser_load_from_data(parser, data, (gssize)n, &local)) {
    /* json-glib says "<data>:LINE:COL: Parse error: ..."; name the real source instead. */
    const char *msg = local->message;
    if (g_str_has_prefix(msg, "<data>:"))
      msg += strlen("<data>:");
    else if (g_str_has_prefix(msg, "<data>"))
      msg += strlen("<data>");
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s:%s", source, msg);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_autofree char *found = vmlet_json_describe(root);
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: expected a JSON object at the top level, found %s", source,
                root ? found : "an empty document");
    return NULL;
  }
  return json_node_copy(root);
}

char *jv_path(const char *prefix, const char *member)
{
  if (!prefix || !*prefix)
    return g_strdup(member);
  return g_strconcat(prefix, ".", member, NULL);
}

/* Looks up a member; NULL when absent or JSON null. A missing required member is recorded
 * as "expected <expected>, found nothing". */
static JsonNode *lookup(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                        JvFlags flags, const char *expected)
{
  JsonNode *node = obj ? json_object_get_member(obj, member) : NULL;
  if (node && JSON_NODE_HOLDS_NULL(node))
    node = NULL;
  if (!node && (flags & JV_REQUIRED)) {
    g_autofree char *p = jv_path(path, member);
    vmlet_diag_error(d, p, "expected %s, found nothing (the field is required)", expected);
  }
  return node;
}

static void wrong_type(VmletDiag *d, const char *path, const char *member, const char *expected,
                       JsonNode *node)
{
  g_autofree char *p = jv_path(path, member);
  g_autofree char *found = vmlet_json_describe(node);
  vmlet_diag_error(d, p, "expected %s, found %s", expected, found);
}

gboolean jv_get_object(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                       JvFlags flags, JsonObject **out)
{
  JsonNode *node = lookup(d, obj, path, member, flags, "an object");
  if (!node)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT(node)) {
    wrong_type(d, path, member, "an object", node);
    return FALSE;
  }
  *out = json_node_get_object(node);
  return TRUE;
}

gboolean jv_get_array(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                      JvFlags flags, guint max_len, JsonArray **out)
{
  JsonNode *node = lookup(d, obj, path, member, flags, "an array");
  if (!node)
    return FALSE;
  if (!JSON_NODE_HOLDS_ARRAY(node)) {
    wrong_type(d, path, member, "an array", node);
    return FALSE;
  }
  JsonArray *arr = json_node_get_array(node);
  if (json_array_get_length(arr) > max_len) {
    g_autofree char *p = jv_path(path, member);
    vmlet_diag_error(d, p, "expected at most %u entries, found %u", max_len,
                     json_array_get_length(arr));
    return FALSE;
  }
  *out = arr;
  return TRUE;
}

static gboolean holds_type(JsonNode *node, GType t)
{
  return JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == t;
}

gboolean jv_get_string(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                       JvFlags flags, gsize max_len, const char **out)
{
  JsonNode *node = lookup(d, obj, path, member, flags, "a string");
  if (!node)
    return FALSE;
  if (!holds_type(node, G_TYPE_STRING)) {
    wrong_type(d, path, member, "a string", node);
    return FALSE;
  }
  const char *s = json_node_get_string(node);
  gsize len = strlen(s);
  if (len > max_len) {
    g_autofree char *p = jv_path(path, member);
    vmlet_diag_error(d, p, "expected at most %" G_GSIZE_FORMAT " bytes, found %" G_GSIZE_FORMAT,
                     max_len, len);
    return FALSE;
  }
  *out = s;
  return TRUE;
}

gboolean jv_get_int(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                    JvFlags flags, gint64 min, gint64 max, gint64 *out)
{
  JsonNode *node = lookup(d, obj, path, member, flags, "an integer");
  if (!node)
    return FALSE;
  if (!holds_type(node, G_TYPE_INT64)) {
    wrong_type(d, path, member, "an integer", node);
    return FALSE;
  }
  gint64 v = json_node_get_int(node);
  if (v < min || v > max) {
    g_autofree char *p = jv_path(path, member);
    vmlet_diag_error(d, p,
                     "expected an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                     ", found %" G_GINT64_FORMAT,
                     min, max, v);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

gboolean jv_get_bool(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                     JvFlags flags, gboolean *out)
{
  JsonNode *node = lookup(d, obj, path, member, flags, "true or false");
  if (!node)
    return FALSE;
  if (!holds_type(node, G_TYPE_BOOLEAN)) {
    wrong_type(d, path, member, "true or false", node);
    return FALSE;
  }
  *out = json_node_get_boolean(node);
  return TRUE;
}

gboolean jv_get_enum(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                     JvFlags flags, const char *const *names, guint *out)
{
  g_autofree char *allowed = g_strjoinv(", ", (char **)names);
  g_autofree char *expected = g_strdup_printf("one of %s", allowed);
  JsonNode *node = lookup(d, obj, path, member, flags, expected);
  if (!node)
    return FALSE;
  if (holds_type(node, G_TYPE_STRING)) {
    const char *s = json_node_get_string(node);
    for (guint i = 0; names[i]; i++) {
      if (g_str_equal(s, names[i])) {
        *out = i;
        return TRUE;
      }
    }
  }
  wrong_type(d, path, member, expected, node);
  return FALSE;
}

gboolean jv_get_string_map(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                           guint max_entries, gsize max_value_len, GHashTable **out)
{
  JsonObject *map = NULL;
  if (!jv_get_object(d, obj, path, member, JV_OPTIONAL, &map))
    return FALSE;
  g_autofree char *p = jv_path(path, member);
  if (json_object_get_size(map) > max_entries) {
    vmlet_diag_error(d, p, "expected at most %u entries, found %u", max_entries,
                     json_object_get_size(map));
    return FALSE;
  }
  g_autoptr(GHashTable) table = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  gboolean ok = TRUE;
  JsonObjectIter iter;
  const char *key;
  JsonNode *value;
  json_object_iter_init(&iter, map);
  while (json_object_iter_next(&iter, &key, &value)) {
    const char *s = NULL;
    /* Kubernetes keys are at most 253 (prefix) + 1 + 63 (name) bytes. */
    if (strlen(key) > 317 || !*key) {
      g_autofree char *q = vmlet_quote_for_message(key);
      vmlet_diag_error(d, p, "expected keys of 1 to 317 bytes, found %s", q);
      ok = FALSE;
      continue;
    }
    if (!jv_get_string(d, map, p, key, JV_REQUIRED, max_value_len, &s)) {
      ok = FALSE;
      continue;
    }
    g_hash_table_insert(table, g_strdup(key), g_strdup(s));
  }
  if (!ok)
    return FALSE;
  *out = g_steal_pointer(&table);
  return TRUE;
}

JsonObject *jv_element_object(VmletDiag *d, JsonArray *arr, guint i, const char *path,
                              const char *what)
{
  JsonNode *el = json_array_get_element(arr, i);
  if (JSON_NODE_HOLDS_OBJECT(el))
    return json_node_get_object(el);
  g_autofree char *found = vmlet_json_describe(el);
  vmlet_diag_error(d, path, "expected %s, found %s", what, found);
  return NULL;
}

void jv_warn_unknown(VmletDiag *d, JsonObject *obj, const char *path, const char *const *known)
{
  JsonObjectIter iter;
  const char *key;
  JsonNode *value;
  json_object_iter_init(&iter, obj);
  while (json_object_iter_next(&iter, &key, &value)) {
    if (!g_strv_contains(known, key)) {
      g_autofree char *p = jv_path(path, key);
      vmlet_diag_warn(d, p, "unknown field, ignored");
    }
  }
}

static JsonNode *member_at(JsonObject *o, const char *member)
{
  return o ? json_object_get_member(o, member) : NULL;
}

JsonObject *jv_object_at(JsonObject *o, const char *member)
{
  JsonNode *n = member_at(o, member);
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonArray *jv_array_at(JsonObject *o, const char *member)
{
  JsonNode *n = member_at(o, member);
  return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

static gboolean holds(JsonNode *n, GType type)
{
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type;
}

const char *jv_string_at(JsonObject *o, const char *member)
{
  JsonNode *n = member_at(o, member);
  return holds(n, G_TYPE_STRING) ? json_node_get_string(n) : NULL;
}

gint64 jv_int_at(JsonObject *o, const char *member, gint64 fallback)
{
  JsonNode *n = member_at(o, member);
  return holds(n, G_TYPE_INT64) ? json_node_get_int(n) : fallback;
}

gboolean jv_bool_at(JsonObject *o, const char *member, gboolean fallback)
{
  JsonNode *n = member_at(o, member);
  return holds(n, G_TYPE_BOOLEAN) ? json_node_get_boolean(n) : fallback;
}

const char *jv_string_path(JsonObject *o, const char *dotted)
{
  const char *dot;
  while (o && (dot = strchr(dotted, '.'))) {
    g_autofree char *step = g_strndup(dotted, (gsize)(dot - dotted));
    o = jv_object_at(o, step);
    dotted = dot + 1;
  }
  return jv_string_at(o, dotted);
}

JsonObject *jv_object_from_strings(GHashTable *map)
{
  JsonObject *o = json_object_new();
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, map);
  while (g_hash_table_iter_next(&it, &k, &v))
    json_object_set_string_member(o, k, v);
  return o;
}
