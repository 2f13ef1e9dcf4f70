/* Bounded JSON parsing and typed member access that records precise diagnostics.
 *
 * Every getter follows one contract: it returns TRUE and writes *out only when the member
 * is present (not null) and valid. An absent or null member returns FALSE and records an
 * error only when JV_REQUIRED is given; a present member of the wrong type or out of range
 * records "PATH: expected ..., found ..." and returns FALSE. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"

/* Nesting deeper than this is never a real spec; json-glib's parser recurses per level,
 * so the bound is enforced before it runs. */
#define VMLET_JSON_MAX_DEPTH 32

typedef enum {
  JV_OPTIONAL = 0,
  JV_REQUIRED = 1 << 0,
} JvFlags;

/* Parses data (len bytes, or NUL-terminated when len < 0). Malformed JSON is reported as
 * "SOURCE:LINE:COLUMN: ...". The root must be an object. */
JsonNode *vmlet_json_parse(const char *source, const char *data, gssize len, GError **error);

/* A short human description of a value for "found ..." texts: "7%" with quotes for a
 * string, 42, true, null, "an object", "an array of 3". */
char *vmlet_json_describe(JsonNode *node);

/* "prefix.member", or "member" when prefix is empty. */
char *jv_path(const char *prefix, const char *member);

gboolean jv_get_object(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                       JvFlags flags, JsonObject **out);
gboolean jv_get_array(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                      JvFlags flags, guint max_len, JsonArray **out);
gboolean jv_get_string(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                       JvFlags flags, gsize max_len, const char **out);
gboolean jv_get_int(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                    JvFlags flags, gint64 min, gint64 max, gint64 *out);
gboolean jv_get_bool(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                     JvFlags flags, gboolean *out);
/* names is NULL-terminated; *out is the index of the matching name. */
gboolean jv_get_enum(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                     JvFlags flags, const char *const *names, guint *out);
/* A map of string to string (labels, nodeSelector): a new table, or NULL when absent. */
gboolean jv_get_string_map(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                           guint max_entries, gsize max_value_len, GHashTable **out);

/* Element i of arr as an object; otherwise records "path: expected <what>, found ..." and
 * returns NULL. */
JsonObject *jv_element_object(VmletDiag *d, JsonArray *arr, guint i, const char *path,
                              const char *what);

/* Warns about members of obj that are not in known (NULL-terminated), so a typo such as
 * "coreFractoin" is reported rather than silently dropped. */
void jv_warn_unknown(VmletDiag *d, JsonObject *obj, const char *path, const char *const *known);

/* Quotes s as a JSON string, shortened to a readable length for messages. */
char *vmlet_quote_for_message(const char *s);

/* Lenient lookups, for JSON read without diagnostics: QEMU's replies and events, records
 * read back from disk, vmletd's answers in the CLI. A member that is absent, null or of
 * another type gives NULL (or the fallback) instead of json-glib's assertion, which its
 * own getters raise on a mistyped member. o may be NULL. */
JsonObject *jv_object_at(JsonObject *o, const char *member);
JsonArray *jv_array_at(JsonObject *o, const char *member);
const char *jv_string_at(JsonObject *o, const char *member);
gint64 jv_int_at(JsonObject *o, const char *member, gint64 fallback);
gboolean jv_bool_at(JsonObject *o, const char *member, gboolean fallback);
/* A map of string to string (labels, a nodeSelector) as a JSON object. */
JsonObject *jv_object_from_strings(GHashTable *map);
/* The string at a dotted path of objects, e.g. "metadata.namespace"; NULL when any step
 * is missing or mistyped. */
const char *jv_string_path(JsonObject *o, const char *dotted);
