#include "specdiff.h"

#include "strutil.h"

#include <string.h>

/* Applied by DVP without a restart; changing them never needs one. */
static const char *const immediate[] = {"runPolicy", "disruptions.restartApprovalMode", NULL};

static void add_change(JsonArray *out, const char *op, const char *path, JsonNode *cur,
                       JsonNode *want)
{
  /* Members in the order the guide prints them (alphabetical, as DVP serializes). */
  JsonObject *o = json_object_new();
  if (cur)
    json_object_set_member(o, "currentValue", json_node_copy(cur));
  if (want)
    json_object_set_member(o, "desiredValue", json_node_copy(want));
  json_object_set_string_member(o, "operation", op);
  json_object_set_string_member(o, "path", path);
  json_array_add_object_element(out, o);
}

static void diff(JsonArray *out, const char *path, JsonNode *cur, JsonNode *want)
{
  if (path && g_strv_contains(immediate, path))
    return;
  gboolean both_objects = cur && want && JSON_NODE_HOLDS_OBJECT(cur) && JSON_NODE_HOLDS_OBJECT(want);
  if (!both_objects) {
    if (!cur)
      add_change(out, "add", path, NULL, want);
    else if (!want)
      add_change(out, "remove", path, cur, NULL);
    else if (!json_node_equal(cur, want))
      add_change(out, "replace", path, cur, want);
    return;
  }
  JsonObject *co = json_node_get_object(cur), *wo = json_node_get_object(want);
  g_autoptr(GPtrArray) keys = g_ptr_array_new();
  g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
  JsonObject *both[] = {co, wo};
  for (gsize i = 0; i < 2; i++) {
    JsonObjectIter it;
    const char *k;
    JsonNode *v;
    json_object_iter_init(&it, both[i]);
    while (json_object_iter_next(&it, &k, &v))
      if (g_hash_table_add(seen, (gpointer)k))
        g_ptr_array_add(keys, (gpointer)k);
  }
  g_ptr_array_sort(keys, vmlet_compare_str_ptrs);
  for (guint i = 0; i < keys->len; i++) {
    const char *k = keys->pdata[i];
    g_autofree char *sub = path ? g_strconcat(path, ".", k, NULL) : g_strdup(k);
    JsonNode *c = json_object_get_member(co, k), *w = json_object_get_member(wo, k);
    /* null and absent mean the same in a spec. */
    if (c && JSON_NODE_HOLDS_NULL(c))
      c = NULL;
    if (w && JSON_NODE_HOLDS_NULL(w))
      w = NULL;
    if (c || w)
      diff(out, sub, c, w);
  }
}

JsonArray *vmlet_spec_diff(JsonNode *current, JsonNode *desired)
{
  JsonArray *out = json_array_new();
  if (current && desired)
    diff(out, NULL, current, desired);
  return out;
}

JsonNode *vmlet_merge_patch(JsonNode *target, JsonNode *patch)
{
  if (!patch || !JSON_NODE_HOLDS_OBJECT(patch))
    return patch ? json_node_copy(patch) : NULL;
  JsonNode *result;
  if (target && JSON_NODE_HOLDS_OBJECT(target)) {
    result = json_node_copy(target);
  } else {
    /* Not json_node_init_object(..., json_object_new()): it takes a reference of its own,
     * and the new object's would leak. */
    result = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(result, json_object_new());
  }
  JsonObject *ro = json_node_get_object(result);
  JsonObjectIter it;
  const char *k;
  JsonNode *v;
  json_object_iter_init(&it, json_node_get_object(patch));
  while (json_object_iter_next(&it, &k, &v)) {
    if (JSON_NODE_HOLDS_NULL(v)) {
      if (json_object_has_member(ro, k))
        json_object_remove_member(ro, k);
      continue;
    }
    JsonNode *merged = vmlet_merge_patch(json_object_get_member(ro, k), v);
    json_object_set_member(ro, k, merged);
  }
  return result;
}
