/* The tables whose columns are the CRD's printer columns as they are written: a header and
 * a JSONPath each, text or a date (AGE). Adding a column is adding a row here. */
#include "table-private.h"

typedef enum {
  PC_TEXT, /* the value as the JSONPath prints it */
  PC_DATE, /* kubectl's AGE of an RFC 3339 timestamp */
} PcType;

typedef struct {
  const char *header;
  const char *path; /* dotted, from the object: "status.phase" */
  PcType type;
  gboolean wide_only; /* the CRD's priority 1: -o wide only */
} PrinterColumn;

static char *column_cell(JsonObject *item, const PrinterColumn *c, GDateTime *now)
{
  g_auto(GStrv) steps = g_strsplit(c->path, ".", 0);
  guint n = g_strv_length(steps);
  JsonObject *o = item;
  for (guint i = 0; o && i + 1 < n; i++)
    o = tbl_member_object(o, steps[i]);
  switch (c->type) {
  case PC_TEXT:
    return tbl_scalar_text(tbl_member(o, steps[n - 1]));
  case PC_DATE:
    return tbl_age_text(tbl_member_string(o, steps[n - 1]), now);
  }
  g_assert_not_reached();
}

static char *format_columns(JsonArray *items, const PrinterColumn *cols, guint n_cols,
                            VmletTableMode mode, GDateTime *now, const char *plural,
                            const char *singular, GError **error)
{
  g_return_val_if_fail(items != NULL && now != NULL, NULL);
  if (!tbl_check_rows(items, plural, singular, error))
    return NULL;
  guint n_rows = json_array_get_length(items);
  if (n_rows == 0)
    return g_strdup("");
  gboolean wide = tbl_is_wide(mode);
  g_autoptr(GPtrArray) raw = g_ptr_array_new_with_free_func(g_free);
  guint n_shown = 0;
  for (guint c = 0; c < n_cols; c++)
    if (wide || !cols[c].wide_only) {
      g_ptr_array_add(raw, g_strdup(cols[c].header));
      n_shown++;
    }
  for (guint line = 0; line < n_rows; line++) {
    JsonObject *o = json_array_get_object_element(items, line);
    for (guint c = 0; c < n_cols; c++)
      if (wide || !cols[c].wide_only)
        g_ptr_array_add(raw, column_cell(o, &cols[c], now));
  }
  return tbl_layout(raw, n_rows + 1, n_shown);
}

char *vmlet_table_format_vmbdas(JsonArray *items, GDateTime *now, GError **error)
{
  static const PrinterColumn cols[] = {
      {"NAME", "metadata.name", PC_TEXT, FALSE},
      {"PHASE", "status.phase", PC_TEXT, FALSE},
      {"VIRTUAL MACHINE NAME", "status.virtualMachineName", PC_TEXT, FALSE},
      {"AGE", "metadata.creationTimestamp", PC_DATE, FALSE},
  };
  return format_columns(items, cols, G_N_ELEMENTS(cols), VMLET_TABLE_NORMAL, now,
                        "attachments", "attachment", error);
}

char *vmlet_table_format_vmops(JsonArray *items, GDateTime *now, VmletTableMode mode,
                               GError **error)
{
  /* The wide columns come after AGE, as kubectl's own -o wide adds them (pods' IP, NODE):
   * REASON is free text, and last it cannot push the others apart. */
  static const PrinterColumn cols[] = {
      {"NAME", "metadata.name", PC_TEXT, FALSE},
      {"PHASE", "status.phase", PC_TEXT, FALSE},
      {"TYPE", "spec.type", PC_TEXT, FALSE},
      {"VIRTUALMACHINE", "spec.virtualMachineName", PC_TEXT, FALSE},
      {"AGE", "metadata.creationTimestamp", PC_DATE, FALSE},
      {"PROGRESS", "status.progress", PC_TEXT, TRUE},
      {"TARGET", "status.targetNode", PC_TEXT, TRUE},
      {"REASON", "status.reason", PC_TEXT, TRUE},
  };
  return format_columns(items, cols, G_N_ELEMENTS(cols), mode, now, "operations", "operation",
                        error);
}
