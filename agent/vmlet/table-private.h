/* What the tables of `vmlet get` share (table.c): lenient lookups in vmletd's JSON, cells
 * as kubectl prints them, and kubectl's tabwriter layout. The tables are in table-vm.c
 * (VirtualMachine, whose columns read conditions) and table-columns.c (the kinds whose
 * printer columns are plain JSONPaths: attachments, operations). */
#pragma once

#include "table.h"

/* Input is untrusted JSON: json-glib's typed getters assert on a mistyped member, so every
 * lookup checks the node type; o may be NULL. */
JsonNode *tbl_member(JsonObject *o, const char *name);
JsonObject *tbl_member_object(JsonObject *o, const char *name);
JsonArray *tbl_member_array(JsonObject *o, const char *name);
const char *tbl_member_string(JsonObject *o, const char *name);

/* A scalar as a printer column's JSONPath prints it; NULL (an empty cell) for an absent or
 * null value and for objects and arrays. */
char *tbl_scalar_text(JsonNode *n);
/* kubectl's date column: HumanDuration(now - timestamp), "<unknown>" for Go's zero time,
 * NULL (an empty cell) for anything that is not RFC 3339. */
char *tbl_age_text(const char *timestamp, GDateTime *now);

/* -o wide? (An exhaustive switch, so that a new mode is decided on here.) */
gboolean tbl_is_wide(VmletTableMode mode);

/* Checks a list before its rows are read: at most VMLET_TABLE_MAX_ROWS (TOO_LARGE, naming
 * plural), each an object (INVALID, "singular N: expected an object"). */
gboolean tbl_check_rows(JsonArray *items, const char *plural, const char *singular,
                        GError **error);
/* Go's tabwriter over raw cells (n_lines x n_cols, row-major, the header first; NULL is an
 * empty cell), each cell made safe for one line. */
char *tbl_layout(GPtrArray *raw, guint n_lines, guint n_cols);
