/* The machinery of every `vmlet get` table: kubectl's AGE, its cells and its layout. */
#include "table-private.h"

#include <string.h>

#include "vmlet-error.h"

/* kubectl's tabwriter settings (k8s.io/cli-runtime/pkg/printers/tabwriter.go). */
#define TAB_MIN_WIDTH 6
#define TAB_PADDING 3

char *vmlet_human_duration(GTimeSpan d)
{
  /* Integer division truncates toward zero, as Go's int(d.Seconds()) and d / time.Minute
   * do, so the boundaries fall on the same microsecond. */
  gint64 seconds = d / G_TIME_SPAN_SECOND;
  if (seconds < -1)
    return g_strdup("<invalid>");
  if (seconds < 0)
    return g_strdup("0s");
  if (seconds < 60 * 2)
    return g_strdup_printf("%" G_GINT64_FORMAT "s", seconds);

  gint64 minutes = d / G_TIME_SPAN_MINUTE;
  if (minutes < 10) {
    gint64 s = seconds % 60;
    if (s == 0)
      return g_strdup_printf("%" G_GINT64_FORMAT "m", minutes);
    return g_strdup_printf("%" G_GINT64_FORMAT "m%" G_GINT64_FORMAT "s", minutes, s);
  }
  if (minutes < 60 * 3)
    return g_strdup_printf("%" G_GINT64_FORMAT "m", minutes);

  gint64 hours = d / G_TIME_SPAN_HOUR;
  if (hours < 8) {
    gint64 m = minutes % 60;
    if (m == 0)
      return g_strdup_printf("%" G_GINT64_FORMAT "h", hours);
    return g_strdup_printf("%" G_GINT64_FORMAT "h%" G_GINT64_FORMAT "m", hours, m);
  }
  if (hours < 48)
    return g_strdup_printf("%" G_GINT64_FORMAT "h", hours);
  if (hours < 24 * 8) {
    gint64 h = hours % 24;
    if (h == 0)
      return g_strdup_printf("%" G_GINT64_FORMAT "d", hours / 24);
    return g_strdup_printf("%" G_GINT64_FORMAT "d%" G_GINT64_FORMAT "h", hours / 24, h);
  }
  if (hours < 24 * 365 * 2)
    return g_strdup_printf("%" G_GINT64_FORMAT "d", hours / 24);
  if (hours < 24 * 365 * 8) {
    gint64 dy = (hours / 24) % 365;
    if (dy == 0)
      return g_strdup_printf("%" G_GINT64_FORMAT "y", hours / 24 / 365);
    return g_strdup_printf("%" G_GINT64_FORMAT "y%" G_GINT64_FORMAT "d", hours / 24 / 365, dy);
  }
  return g_strdup_printf("%" G_GINT64_FORMAT "y", hours / 24 / 365);
}

JsonNode *tbl_member(JsonObject *o, const char *name)
{
  return o ? json_object_get_member(o, name) : NULL;
}

JsonObject *tbl_member_object(JsonObject *o, const char *name)
{
  JsonNode *n = tbl_member(o, name);
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonArray *tbl_member_array(JsonObject *o, const char *name)
{
  JsonNode *n = tbl_member(o, name);
  return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

const char *tbl_member_string(JsonObject *o, const char *name)
{
  JsonNode *n = tbl_member(o, name);
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
             ? json_node_get_string(n)
             : NULL;
}

char *tbl_scalar_text(JsonNode *n)
{
  if (!n || !JSON_NODE_HOLDS_VALUE(n))
    return NULL;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_STRING)
    return g_strdup(json_node_get_string(n));
  if (t == G_TYPE_INT64)
    return g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(n));
  if (t == G_TYPE_DOUBLE) {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return g_strdup(g_ascii_dtostr(buf, sizeof(buf), json_node_get_double(n)));
  }
  if (t == G_TYPE_BOOLEAN)
    return g_strdup(json_node_get_boolean(n) ? "true" : "false");
  return NULL;
}

/* The shape Go's time.Parse(time.RFC3339, ...) accepts (YYYY-MM-DDTHH:MM:SS, optional
 * fraction, Z or ±HH:MM; upper-case T and Z only, as Go), checked before GLib parses it:
 * g_date_time_new_from_iso8601 also takes ISO 8601 forms Go refuses (week dates, ordinal
 * dates, no separators). */
static gboolean rfc3339_shape(const char *s)
{
  static const char pattern[] = "dddd-dd-ddTdd:dd:dd";
  gsize len = strnlen(s, 64);
  if (len >= 64 || len < sizeof(pattern) - 1)
    return FALSE;
  for (gsize i = 0; i < sizeof(pattern) - 1; i++) {
    gboolean ok = pattern[i] == 'd' ? g_ascii_isdigit(s[i]) : s[i] == pattern[i];
    if (!ok)
      return FALSE;
  }
  const char *p = s + sizeof(pattern) - 1;
  if (*p == '.') {
    p++;
    if (!g_ascii_isdigit(*p))
      return FALSE;
    while (g_ascii_isdigit(*p))
      p++;
  }
  if (p[0] == 'Z' && p[1] == '\0')
    return TRUE;
  return (p[0] == '+' || p[0] == '-') && g_ascii_isdigit(p[1]) && g_ascii_isdigit(p[2]) &&
         p[3] == ':' && g_ascii_isdigit(p[4]) && g_ascii_isdigit(p[5]) && p[6] == '\0';
}

char *tbl_age_text(const char *timestamp, GDateTime *now)
{
  if (!timestamp || !rfc3339_shape(timestamp))
    return NULL;
  g_autoptr(GDateTime) created = g_date_time_new_from_iso8601(timestamp, NULL);
  if (!created)
    return NULL;
  /* 0001-01-01T00:00:00Z, Go's time.Time{}: metav1.Time.IsZero(). */
  if (g_date_time_to_unix(created) == G_GINT64_CONSTANT(-62135596800) &&
      g_date_time_get_microsecond(created) == 0)
    return g_strdup("<unknown>");
  return vmlet_human_duration(g_date_time_difference(now, created));
}

/* A value made safe for one cell of one line: cut at the first line break (kubectl
 * truncates at \n, \r or \f and appends "..."), control characters as ^X (kubectl writes
 * ESC as "^["; a tab would also split the cell), at most VMLET_TABLE_MAX_CELL characters.
 * Returns the text and, in *out_width, its width in characters (what Go's tabwriter
 * counts). */
static char *sanitize_cell(const char *raw, guint *out_width)
{
  g_autofree char *valid = g_utf8_make_valid(raw ? raw : "", -1);
  g_autoptr(GString) out = g_string_new(NULL);
  gboolean cut = FALSE;

  for (const char *p = valid; *p; p = g_utf8_next_char(p)) {
    guchar c = (guchar)*p;
    if (c == '\n' || c == '\r' || c == '\f') {
      cut = TRUE;
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      g_string_append_c(out, '^');
      g_string_append_c(out, (char)(c ^ 0x40));
    } else {
      g_string_append_len(out, p, g_utf8_next_char(p) - p);
    }
  }

  glong width = g_utf8_strlen(out->str, (gssize)out->len);
  if (width > VMLET_TABLE_MAX_CELL || (cut && width > VMLET_TABLE_MAX_CELL - 3)) {
    const char *end = g_utf8_offset_to_pointer(out->str, VMLET_TABLE_MAX_CELL - 3);
    g_string_truncate(out, (gsize)(end - out->str));
    width = VMLET_TABLE_MAX_CELL - 3;
    cut = TRUE;
  }
  if (cut) {
    g_string_append(out, "...");
    width += 3;
  }
  *out_width = (guint)width;
  return g_string_free(g_steal_pointer(&out), FALSE);
}

/* A column as wide as its widest cell plus the padding, at least the minimum width; the
 * text after the last tab is not padded. */
char *tbl_layout(GPtrArray *raw, guint n_lines, guint n_cols)
{
  g_autoptr(GPtrArray) cells = g_ptr_array_new_full(n_lines * n_cols, g_free);
  g_autofree guint *cell_width = g_new0(guint, n_lines * n_cols);
  g_autofree guint *col_width = g_new0(guint, n_cols);
  for (guint idx = 0; idx < n_lines * n_cols; idx++) {
    guint w = 0;
    g_ptr_array_add(cells, sanitize_cell(raw->pdata[idx], &w));
    cell_width[idx] = w;
    col_width[idx % n_cols] = MAX(col_width[idx % n_cols], w);
  }
  g_autoptr(GString) out = g_string_new(NULL);
  for (guint line = 0; line < n_lines; line++) {
    for (guint i = 0; i < n_cols; i++) {
      guint idx = line * n_cols + i;
      g_string_append(out, cells->pdata[idx]);
      if (i + 1 < n_cols) {
        guint width = MAX(TAB_MIN_WIDTH, col_width[i] + TAB_PADDING);
        for (guint pad = cell_width[idx]; pad < width; pad++)
          g_string_append_c(out, ' ');
      }
    }
    g_string_append_c(out, '\n');
  }
  return g_string_free(g_steal_pointer(&out), FALSE);
}

gboolean tbl_check_rows(JsonArray *items, const char *plural, const char *singular,
                        GError **error)
{
  guint n_rows = json_array_get_length(items);
  if (n_rows > VMLET_TABLE_MAX_ROWS) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE, "%u %s: a table holds at most %d",
                n_rows, plural, VMLET_TABLE_MAX_ROWS);
    return FALSE;
  }
  for (guint i = 0; i < n_rows; i++)
    if (!JSON_NODE_HOLDS_OBJECT(json_array_get_element(items, i))) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s %u: expected an object",
                  singular, i);
      return FALSE;
    }
  return TRUE;
}

gboolean tbl_is_wide(VmletTableMode mode)
{
  switch (mode) {
  case VMLET_TABLE_NORMAL:
    return FALSE;
  case VMLET_TABLE_WIDE:
    return TRUE;
  }
  g_assert_not_reached();
}
