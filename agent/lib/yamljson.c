#include "yamljson.h"

#include <string.h>

#include <yaml.h>

#include "fileio.h"
#include "jsonval.h"
#include "vmlet-error.h"

#define MAX_DOCUMENTS 256

gboolean vmlet_looks_like_yaml(const char *data, gsize len)
{
  for (gsize i = 0; i < len; i++) {
    char c = data[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
      continue;
    return c != '{' && c != '[';
  }
  return FALSE;
}

static gboolean is_int(const char *s)
{
  const char *p = s;
  if (*p == '-' || *p == '+')
    p++;
  if (!*p)
    return FALSE;
  for (; *p; p++)
    if (!g_ascii_isdigit(*p))
      return FALSE;
  return strlen(s) < 19; /* fits in gint64 without overflow checks */
}

static gboolean is_float(const char *s)
{
  /* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
  const char *p = s;
  if (*p == '-' || *p == '+')
    p++;
  gboolean digits = FALSE;
  while (g_ascii_isdigit(*p))
    p++, digits = TRUE;
  if (*p == '.') {
    p++;
    while (g_ascii_isdigit(*p))
      p++, digits = TRUE;
  }
  if (!digits)
    return FALSE;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '-' || *p == '+')
      p++;
    if (!g_ascii_isdigit(*p))
      return FALSE;
    while (g_ascii_isdigit(*p))
      p++;
  }
  return *p == '\0';
}

static void add_scalar(JsonBuilder *b, const yaml_event_t *ev)
{
  const char *v = (const char *)ev->data.scalar.value;
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
    json_builder_add_string_value(b, v);
    return;
  }
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", NULL};
  static const char *const falses[] = {"false", "False", "FALSE", NULL};
  if (g_strv_contains(nulls, v))
    json_builder_add_null_value(b);
  else if (g_strv_contains(trues, v))
    json_builder_add_boolean_value(b, TRUE);
  else if (g_strv_contains(falses, v))
    json_builder_add_boolean_value(b, FALSE);
  else if (is_int(v))
    json_builder_add_int_value(b, g_ascii_strtoll(v, NULL, 10));
  else if (is_float(v))
    json_builder_add_double_value(b, g_ascii_strtod(v, NULL));
  else
    json_builder_add_string_value(b, v);
}

typedef struct {
  gboolean mapping;    /* a mapping (else a sequence) */
  gboolean expect_key; /* a mapping waiting for its next key */
} Frame;

/* A value was completed inside the innermost collection: a mapping wants a key next. */
static void value_done(GArray *stack)
{
  if (stack->len) {
    Frame *f = &g_array_index(stack, Frame, stack->len - 1);
    if (f->mapping)
      f->expect_key = TRUE;
  }
}

char *vmlet_yaml_to_json(const char *source, const char *data, gsize len, gsize *out_len,
                         GError **error)
{
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "%s: cannot start the YAML parser", source);
    return NULL;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
  g_autoptr(GPtrArray) docs = g_ptr_array_new_with_free_func((GDestroyNotify)json_node_unref);
  g_autoptr(JsonBuilder) b = NULL;
  g_autoptr(GArray) stack = g_array_new(FALSE, FALSE, sizeof(Frame));
  gboolean done = FALSE;
  g_autofree char *problem = NULL;
  gsize line = 0, col = 0;
  while (!problem && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      problem = g_strdup(parser.problem ? parser.problem : "invalid YAML");
      line = parser.problem_mark.line + 1;
      col = parser.problem_mark.column + 1;
      break;
    }
    Frame *top = stack->len ? &g_array_index(stack, Frame, stack->len - 1) : NULL;
    gboolean is_key = top && top->mapping && top->expect_key;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = TRUE;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (docs->len >= MAX_DOCUMENTS)
        problem = g_strdup_printf("more than %d documents", MAX_DOCUMENTS);
      g_clear_object(&b);
      b = json_builder_new_immutable();
      break;
    case YAML_DOCUMENT_END_EVENT: {
      JsonNode *root = json_builder_get_root(b);
      if (root)
        g_ptr_array_add(docs, root);
      break;
    }
    case YAML_ALIAS_EVENT:
      problem = g_strdup("aliases are not supported");
      break;
    case YAML_SCALAR_EVENT:
      if (ev.data.scalar.anchor) {
        problem = g_strdup("anchors are not supported");
      } else if (is_key) {
        json_builder_set_member_name(b, (const char *)ev.data.scalar.value);
        top->expect_key = FALSE;
      } else {
        add_scalar(b, &ev);
        value_done(stack);
      }
      break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      gboolean mapping = ev.type == YAML_MAPPING_START_EVENT;
      if (is_key)
        problem = g_strdup("only scalar mapping keys are supported");
      else if ((mapping ? ev.data.mapping_start.anchor : ev.data.sequence_start.anchor))
        problem = g_strdup("anchors are not supported");
      else if (stack->len >= VMLET_JSON_MAX_DEPTH)
        problem = g_strdup_printf("nested deeper than %d levels", VMLET_JSON_MAX_DEPTH);
      if (problem)
        break;
      if (mapping)
        json_builder_begin_object(b);
      else
        json_builder_begin_array(b);
      Frame f = {.mapping = mapping, .expect_key = mapping};
      g_array_append_val(stack, f);
      break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      if (ev.type == YAML_MAPPING_END_EVENT)
        json_builder_end_object(b);
      else
        json_builder_end_array(b);
      g_array_set_size(stack, stack->len - 1);
      value_done(stack);
      break;
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
      break;
    }
    if (problem) {
      line = ev.start_mark.line + 1;
      col = ev.start_mark.column + 1;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  if (problem) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s:%" G_GSIZE_FORMAT ":%" G_GSIZE_FORMAT ": %s", source, line, col, problem);
    return NULL;
  }
  if (docs->len == 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: no YAML document", source);
    return NULL;
  }
  g_autoptr(JsonNode) out = NULL;
  if (docs->len == 1) {
    out = json_node_ref(docs->pdata[0]);
  } else {
    JsonObject *list = json_object_new();
    json_object_set_string_member(list, "apiVersion", "v1");
    json_object_set_string_member(list, "kind", "List");
    JsonArray *items = json_array_new();
    for (guint i = 0; i < docs->len; i++)
      json_array_add_element(items, json_node_copy(docs->pdata[i]));
    json_object_set_array_member(list, "items", items);
    out = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(out, list);
  }
  char *text = json_to_string(out, TRUE);
  if (out_len)
    *out_len = strlen(text);
  return text;
}

gboolean vmlet_read_manifest(const char *path, char **out_json, gsize *out_len, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_file_or_stdin(path, VMLET_MAX_DROPIN_BYTES, &data, &len, error))
    return FALSE;
  if (!vmlet_looks_like_yaml(data, len)) {
    *out_json = g_steal_pointer(&data);
    *out_len = len;
    return TRUE;
  }
  const char *source = g_str_equal(path, "-") ? "<stdin>" : path;
  char *json = vmlet_yaml_to_json(source, data, len, out_len, error);
  if (!json)
    return FALSE;
  *out_json = json;
  return TRUE;
}
