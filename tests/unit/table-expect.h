/* What the table tests share: a fixed "now", timestamps relative to it, JSON lists, and
 * expected lines built from cells and their column widths. */
#pragma once

#include <stdarg.h>

#include "table.h"

/* The fixed "now" of every table. */
#define NOW "2024-06-01T12:00:00Z"

static inline GDateTime *now_time(void)
{
  GDateTime *t = g_date_time_new_from_iso8601(NOW, NULL);
  g_assert_nonnull(t);
  return t;
}

/* RFC 3339 text for now - seconds. */
static inline char *ago(gint64 seconds)
{
  g_autoptr(GDateTime) now = now_time();
  g_autoptr(GDateTime) t = g_date_time_add_seconds(now, (gdouble)-seconds);
  return g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ");
}

static inline JsonArray *parse_array(const char *json)
{
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) error = NULL;
  g_assert_true(json_parser_load_from_data(parser, json, -1, &error));
  g_assert_no_error(error);
  JsonNode *root = json_parser_get_root(parser);
  g_assert_true(JSON_NODE_HOLDS_ARRAY(root));
  return json_array_ref(json_node_get_array(root));
}

/* One expected line: each cell but the last padded with spaces to its given column width
 * (worked out by hand from the widest cell + 3), then the last cell and "\n". */
static inline char *expect_line(const char *first, ...) G_GNUC_NULL_TERMINATED;
static inline char *expect_line(const char *first, ...)
{
  GString *out = g_string_new(NULL);
  va_list ap;
  va_start(ap, first);
  const char *text = first;
  for (;;) {
    int width = va_arg(ap, int);
    if (width < 0) {
      g_string_append(out, text);
      break;
    }
    g_string_append(out, text);
    for (glong pad = g_utf8_strlen(text, -1); pad < width; pad++)
      g_string_append_c(out, ' ');
    text = va_arg(ap, const char *);
  }
  va_end(ap);
  g_string_append_c(out, '\n');
  return g_string_free(out, FALSE);
}

/* Ends an expect_line() list: the cell before it is the unpadded last one. */
#define LAST -1, (const char *)NULL
