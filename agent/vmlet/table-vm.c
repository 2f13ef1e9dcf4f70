/* `vmlet get vm`: DVP's VirtualMachine printer columns, some of which read conditions. */
#include "table-private.h"

#include <string.h>

typedef enum {
  COL_NAME,
  COL_PHASE,
  COL_CORES,
  COL_COREFRACTION,
  COL_MEMORY,
  COL_NEED_RESTART,
  COL_AGENT,
  COL_MIGRATABLE,
  COL_NODE,
  COL_IPADDRESS,
  COL_AGE,
} Column;
#define N_COLUMNS (COL_AGE + 1)

/* In the CRD's order; wide_only are its priority-1 columns. */
static const struct {
  const char *header;
  gboolean wide_only;
} columns[N_COLUMNS] = {
    [COL_NAME] = {"NAME", FALSE},
    [COL_PHASE] = {"PHASE", FALSE},
    [COL_CORES] = {"CORES", TRUE},
    [COL_COREFRACTION] = {"COREFRACTION", TRUE},
    [COL_MEMORY] = {"MEMORY", TRUE},
    [COL_NEED_RESTART] = {"NEED RESTART", TRUE},
    [COL_AGENT] = {"AGENT", TRUE},
    [COL_MIGRATABLE] = {"MIGRATABLE", TRUE},
    [COL_NODE] = {"NODE", FALSE},
    [COL_IPADDRESS] = {"IPADDRESS", FALSE},
    [COL_AGE] = {"AGE", FALSE},
};

/* The status of the first condition of this type, as the CRD's
 * .status.conditions[?(@.type=='TYPE')].status prints it; NULL when there is none. */
static char *condition_status(JsonObject *status, const char *type)
{
  JsonArray *conditions = tbl_member_array(status, "conditions");
  guint len = conditions ? json_array_get_length(conditions) : 0;
  for (guint i = 0; i < len; i++) {
    JsonNode *n = json_array_get_element(conditions, i);
    if (!JSON_NODE_HOLDS_OBJECT(n))
      continue;
    JsonObject *c = json_node_get_object(n);
    const char *t = tbl_member_string(c, "type");
    if (t && strcmp(t, type) == 0)
      return tbl_scalar_text(tbl_member(c, "status"));
  }
  return NULL;
}

static char *need_restart_text(JsonObject *status)
{
  char *c = condition_status(status, "AwaitingRestartToApplyConfiguration");
  if (c)
    return c;
  JsonArray *changes = tbl_member_array(status, "restartAwaitingChanges");
  return g_strdup(changes && json_array_get_length(changes) > 0 ? "True" : "False");
}

static char *condition_or_false(JsonObject *status, const char *type)
{
  char *c = condition_status(status, type);
  return c ? c : g_strdup("False");
}

static char *cell_value(JsonObject *vm, Column col, GDateTime *now)
{
  JsonObject *metadata = tbl_member_object(vm, "metadata");
  JsonObject *spec = tbl_member_object(vm, "spec");
  JsonObject *status = tbl_member_object(vm, "status");
  JsonObject *cpu = tbl_member_object(spec, "cpu");

  switch (col) {
  case COL_NAME:
    return tbl_scalar_text(tbl_member(metadata, "name"));
  case COL_PHASE:
    return tbl_scalar_text(tbl_member(status, "phase"));
  case COL_CORES:
    return tbl_scalar_text(tbl_member(cpu, "cores"));
  case COL_COREFRACTION:
    return tbl_scalar_text(tbl_member(cpu, "coreFraction"));
  case COL_MEMORY:
    return tbl_scalar_text(tbl_member(tbl_member_object(spec, "memory"), "size"));
  case COL_NEED_RESTART:
    return need_restart_text(status);
  case COL_AGENT:
    return condition_or_false(status, "AgentReady");
  case COL_MIGRATABLE:
    return condition_or_false(status, "Migratable");
  case COL_NODE:
    return tbl_scalar_text(tbl_member(status, "nodeName"));
  case COL_IPADDRESS:
    return tbl_scalar_text(tbl_member(status, "ipAddress"));
  case COL_AGE:
    return tbl_age_text(tbl_member_string(metadata, "creationTimestamp"), now);
  }
  g_assert_not_reached();
}

char *vmlet_table_format_vms(JsonArray *vms, GDateTime *now, VmletTableMode mode,
                             GError **error)
{
  g_return_val_if_fail(vms != NULL && now != NULL, NULL);
  if (!tbl_check_rows(vms, "virtual machines", "virtual machine", error))
    return NULL;
  guint n_rows = json_array_get_length(vms);
  if (n_rows == 0)
    return g_strdup("");

  gboolean wide = tbl_is_wide(mode);
  Column shown[N_COLUMNS];
  guint n_shown = 0;
  for (guint c = 0; c < N_COLUMNS; c++)
    if (wide || !columns[c].wide_only)
      shown[n_shown++] = (Column)c;

  /* Row 0 is the header. */
  g_autoptr(GPtrArray) raw = g_ptr_array_new_with_free_func(g_free);
  for (guint line = 0; line <= n_rows; line++) {
    JsonObject *vm = line ? json_array_get_object_element(vms, line - 1) : NULL;
    for (guint i = 0; i < n_shown; i++)
      g_ptr_array_add(raw, line == 0 ? g_strdup(columns[shown[i]].header)
                                     : cell_value(vm, shown[i], now));
  }
  return tbl_layout(raw, n_rows + 1, n_shown);
}
