/* `vmlet get vmop` and `vmlet get vmbda`: the CRDs' printer columns, -o wide's additions
 * for a migration, and missing or mistyped fields. */
#include <string.h>

#include "table-expect.h"
#include "vmlet-error.h"

static char *format_ops(const char *json, VmletTableMode mode)
{
  g_autoptr(JsonArray) items = parse_array(json);
  g_autoptr(GDateTime) now = now_time();
  g_autoptr(GError) error = NULL;
  char *out = vmlet_table_format_vmops(items, now, mode, &error);
  g_assert_no_error(error);
  g_assert_nonnull(out);
  return out;
}

/* An operation as vmletd's GET .../virtualmachineoperations lists it. status_extra is
 * appended inside status (a leading comma included), or "". */
static char *op_json(const char *name, const char *type, const char *vm, const char *phase,
                     gint64 age_seconds, const char *status_extra)
{
  g_autofree char *created = ago(age_seconds);
  return g_strdup_printf(
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\","
      " \"kind\": \"VirtualMachineOperation\","
      " \"metadata\": {\"name\": \"%s\", \"namespace\": \"default\","
      "   \"creationTimestamp\": \"%s\"},"
      " \"spec\": {\"virtualMachineName\": \"%s\", \"type\": \"%s\", \"force\": false},"
      " \"status\": {\"phase\": \"%s\"%s}}",
      name, created, vm, type, phase, status_extra);
}

/* `d8 k get vmop` after the guide's Evict, and a Stop that is still going. */
static void test_vmop_get(void)
{
  g_autofree char *a = op_json("evict-linux-vm-2d5xk", "Evict", "linux-vm", "Completed", 130,
                               ", \"progress\": \"100%\", \"targetNode\": \"virtlab-pt-2\"");
  g_autofree char *b = op_json("stop-db-1a2b3c4d", "Stop", "db", "InProgress", 5, "");
  g_autofree char *json = g_strdup_printf("[%s, %s]", a, b);
  g_autofree char *out = format_ops(json, VMLET_TABLE_NORMAL);
  /* NAME as wide as "evict-linux-vm-2d5xk" (20 + 3), PHASE "InProgress" (10 + 3), TYPE
   * "Evict" (5 + 3), VIRTUALMACHINE its header (14 + 3). */
  g_assert_cmpstr(out, ==,
                  "NAME                   PHASE        TYPE    VIRTUALMACHINE   AGE\n"
                  "evict-linux-vm-2d5xk   Completed    Evict   linux-vm         2m10s\n"
                  "stop-db-1a2b3c4d       InProgress   Stop    db               5s\n");
}

/* -o wide: the normal columns unchanged, then PROGRESS, TARGET and REASON; an operation
 * without them has empty cells there. */
static void test_vmop_wide(void)
{
  g_autofree char *a = op_json("evict-linux-vm-2d5xk", "Evict", "linux-vm", "InProgress", 30,
                               ", \"progress\": \"45%\", \"targetNode\": \"hv-2\"");
  g_autofree char *b = op_json(
      "evict-web-0f0f0f0f", "Evict", "web", "Failed", 3 * 3600,
      ", \"progress\": \"1%\", \"reason\": \"migration is not enabled on this node\"");
  g_autofree char *c = op_json("start-web-12345678", "Start", "web", "Completed", 60, "");
  g_autofree char *json = g_strdup_printf("[%s, %s, %s]", a, b, c);
  g_autofree char *out = format_ops(json, VMLET_TABLE_WIDE);
  g_autofree char *h = expect_line("NAME", 23, "PHASE", 13, "TYPE", 8, "VIRTUALMACHINE", 17,
                                   "AGE", 6, "PROGRESS", 11, "TARGET", 9, "REASON", LAST);
  g_autofree char *r1 = expect_line("evict-linux-vm-2d5xk", 23, "InProgress", 13, "Evict", 8,
                                    "linux-vm", 17, "30s", 6, "45%", 11, "hv-2", 9, "", LAST);
  g_autofree char *r2 = expect_line("evict-web-0f0f0f0f", 23, "Failed", 13, "Evict", 8, "web",
                                    17, "3h", 6, "1%", 11, "", 9,
                                    "migration is not enabled on this node", LAST);
  g_autofree char *r3 = expect_line("start-web-12345678", 23, "Completed", 13, "Start", 8, "web",
                                    17, "60s", 6, "", 11, "", 9, "", LAST);
  g_autofree char *want = g_strconcat(h, r1, r2, r3, NULL);
  g_assert_cmpstr(out, ==, want);

  /* Normal mode leaves the wide columns out entirely. */
  g_autofree char *normal = format_ops(json, VMLET_TABLE_NORMAL);
  g_assert_null(strstr(normal, "PROGRESS"));
  g_assert_null(strstr(normal, "hv-2"));
  g_assert_true(g_str_has_prefix(normal, "NAME                   PHASE        TYPE    "
                                         "VIRTUALMACHINE   AGE\n"));
}

/* Mistyped values print as JSON would, or not at all; nothing crashes. */
static void test_vmop_odd_fields(void)
{
  g_autofree char *out = format_ops(
      "[{\"metadata\": {\"name\": \"a\"}, \"spec\": [], \"status\": {\"phase\": 3,"
      "   \"progress\": 45, \"targetNode\": {\"n\": 1}, \"reason\": null}},"
      " {\"metadata\": 7, \"spec\": {\"type\": \"Evict\", \"virtualMachineName\": true},"
      "  \"status\": \"Failed\"},"
      " {}]",
      VMLET_TABLE_WIDE);
  g_autofree char *h = expect_line("NAME", 7, "PHASE", 8, "TYPE", 8, "VIRTUALMACHINE", 17,
                                   "AGE", 6, "PROGRESS", 11, "TARGET", 9, "REASON", LAST);
  g_autofree char *r1 = expect_line("a", 7, "3", 8, "", 8, "", 17, "", 6, "45", 11, "", 9, "",
                                    LAST);
  g_autofree char *r2 = expect_line("", 7, "", 8, "Evict", 8, "true", 17, "", 6, "", 11, "", 9,
                                    "", LAST);
  g_autofree char *r3 = expect_line("", 7, "", 8, "", 8, "", 17, "", 6, "", 11, "", 9, "", LAST);
  g_autofree char *want = g_strconcat(h, r1, r2, r3, NULL);
  g_assert_cmpstr(out, ==, want);
}

static void test_vmop_list_bounds(void)
{
  g_autoptr(GDateTime) now = now_time();
  g_autoptr(GError) error = NULL;
  g_autofree char *empty = format_ops("[]", VMLET_TABLE_WIDE);
  g_assert_cmpstr(empty, ==, "");

  g_autoptr(JsonArray) bad = parse_array("[{}, \"x\"]");
  g_autofree char *out = vmlet_table_format_vmops(bad, now, VMLET_TABLE_NORMAL, &error);
  g_assert_null(out);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_assert_cmpstr(error->message, ==, "operation 1: expected an object");
  g_clear_error(&error);

  g_autoptr(JsonArray) many = json_array_new();
  for (int i = 0; i <= VMLET_TABLE_MAX_ROWS; i++)
    json_array_add_object_element(many, json_object_new());
  g_autofree char *out2 = vmlet_table_format_vmops(many, now, VMLET_TABLE_NORMAL, &error);
  g_assert_null(out2);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
}

/* `d8 k get vmbda` as the guide prints it, and an attachment without a status yet. */
static void test_vmbda_get(void)
{
  g_autofree char *created = ago(66);
  g_autofree char *json = g_strdup_printf(
      "[{\"metadata\": {\"name\": \"attach-blank\", \"creationTimestamp\": \"%s\"},"
      "  \"status\": {\"phase\": \"Attached\", \"virtualMachineName\": \"linux-vm\"}},"
      " {\"metadata\": {\"name\": \"x\"}}]",
      created);
  g_autoptr(JsonArray) items = parse_array(json);
  g_autoptr(GDateTime) now = now_time();
  g_autoptr(GError) error = NULL;
  g_autofree char *out = vmlet_table_format_vmbdas(items, now, &error);
  g_assert_no_error(error);
  g_autofree char *h = expect_line("NAME", 15, "PHASE", 11, "VIRTUAL MACHINE NAME", 23, "AGE",
                                   LAST);
  g_autofree char *r1 = expect_line("attach-blank", 15, "Attached", 11, "linux-vm", 23, "66s",
                                    LAST);
  g_autofree char *r2 = expect_line("x", 15, "", 11, "", 23, "", LAST);
  g_autofree char *want = g_strconcat(h, r1, r2, NULL);
  g_assert_cmpstr(out, ==, want);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/table-columns/vmop-get", test_vmop_get);
  g_test_add_func("/table-columns/vmop-wide", test_vmop_wide);
  g_test_add_func("/table-columns/vmop-odd-fields", test_vmop_odd_fields);
  g_test_add_func("/table-columns/vmop-list-bounds", test_vmop_list_bounds);
  g_test_add_func("/table-columns/vmbda-get", test_vmbda_get);
  return g_test_run();
}
