/* `vmlet get` tables: the DVP guide's example outputs reproduced byte for byte, kubectl's
 * HumanDuration at every boundary, and missing or mistyped fields. */
#include <string.h>

#include "table-expect.h"
#include "vmlet-error.h"

static char *format(const char *json, VmletTableMode mode)
{
  g_autoptr(JsonArray) vms = parse_array(json);
  g_autoptr(GDateTime) now = now_time();
  g_autoptr(GError) error = NULL;
  char *out = vmlet_table_format_vms(vms, now, mode, &error);
  g_assert_no_error(error);
  g_assert_nonnull(out);
  return out;
}

/* A VM in the shape `kubectl get vm -o json` prints, with the seed's values. */
static char *seed_vm(const char *phase, const char *node, const char *ip, gint64 age_seconds,
                     gboolean awaiting_restart)
{
  g_autofree char *created = ago(age_seconds);
  return g_strdup_printf(
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"VirtualMachine\","
      " \"metadata\": {\"name\": \"linux-vm\", \"namespace\": \"default\","
      "   \"creationTimestamp\": \"%s\"},"
      " \"spec\": {\"virtualMachineClassName\": \"host\", \"runPolicy\": \"AlwaysOn\","
      "   \"cpu\": {\"cores\": 2, \"coreFraction\": \"100%%\"}, \"memory\": {\"size\": \"1Gi\"},"
      "   \"blockDeviceRefs\": [{\"kind\": \"VirtualDisk\", \"name\": \"linux-vm-root\"}]},"
      " \"status\": {\"phase\": \"%s\", \"nodeName\": \"%s\", \"ipAddress\": \"%s\","
      "   \"restartAwaitingChanges\": %s,"
      "   \"conditions\": ["
      "     {\"type\": \"AgentReady\", \"status\": \"True\", \"reason\": \"AgentReady\"},"
      "     {\"type\": \"Migratable\", \"status\": \"True\"}]}}",
      created, phase, node, ip,
      awaiting_restart ? "[{\"currentValue\": 1, \"desiredValue\": 2, \"operation\": "
                         "\"replace\", \"path\": \"cpu.cores\"}]"
                       : "null");
}

/* `d8 k get vm linux-vm` */
static void test_seed_get(void)
{
  g_autofree char *vm = seed_vm("Running", "virtlab-pt-2", "10.66.10.12", 11 * 60, FALSE);
  g_autofree char *json = g_strdup_printf("[%s]", vm);
  g_autofree char *out = format(json, VMLET_TABLE_NORMAL);
  g_assert_cmpstr(out, ==,
                  "NAME       PHASE     NODE           IPADDRESS     AGE\n"
                  "linux-vm   Running   virtlab-pt-2   10.66.10.12   11m\n");
}

/* `d8 k get vm linux-vm -o wide` after cpu.cores 1 -> 2. The guide's header line has one
 * space more after NAME than its own row; kubectl's tabwriter aligns both (the row is the
 * output reproduced here; the header follows the same widths). */
static void test_seed_wide(void)
{
  g_autofree char *vm = seed_vm("Running", "virtlab-pt-1", "10.66.10.13", 5 * 60 + 16, TRUE);
  g_autofree char *json = g_strdup_printf("[%s]", vm);
  g_autofree char *out = format(json, VMLET_TABLE_WIDE);
  g_assert_cmpstr(out, ==,
                  "NAME       PHASE     CORES   COREFRACTION   MEMORY   NEED RESTART   AGENT   "
                  "MIGRATABLE   NODE           IPADDRESS     AGE\n"
                  "linux-vm   Running   2       100%           1Gi      True           True    "
                  "True         virtlab-pt-1   10.66.10.13   5m16s\n");
}

/* `d8 k get vm -w` during an Evict, as one table: columns as wide as "Migrating". */
static void test_seed_watch(void)
{
  g_autofree char *a = seed_vm("Running", "virtlab-pt-1", "10.66.10.14", 79 * 60, FALSE);
  g_autofree char *b = seed_vm("Migrating", "virtlab-pt-1", "10.66.10.14", 79 * 60 + 5, FALSE);
  g_autofree char *c = seed_vm("Running", "virtlab-pt-2", "10.66.10.14", 79 * 60 + 59, FALSE);
  g_autofree char *json = g_strdup_printf("[%s, %s, %s, %s]", a, b, b, c);
  g_autofree char *out = format(json, VMLET_TABLE_NORMAL);
  g_assert_cmpstr(out, ==,
                  "NAME       PHASE       NODE           IPADDRESS     AGE\n"
                  "linux-vm   Running     virtlab-pt-1   10.66.10.14   79m\n"
                  "linux-vm   Migrating   virtlab-pt-1   10.66.10.14   79m\n"
                  "linux-vm   Migrating   virtlab-pt-1   10.66.10.14   79m\n"
                  "linux-vm   Running     virtlab-pt-2   10.66.10.14   79m\n");
}

/* The cases of apimachinery's duration_test.go and every branch edge, in microseconds. */
static void test_human_duration(void)
{
  const gint64 S = G_TIME_SPAN_SECOND, M = G_TIME_SPAN_MINUTE, H = G_TIME_SPAN_HOUR,
               D = G_TIME_SPAN_DAY, MS = G_TIME_SPAN_MILLISECOND;
  const struct {
    gint64 d;
    const char *want;
  } cases[] = {
      {-2 * S, "<invalid>"},
      {-S - 999 * MS, "0s"}, /* -1.999 s truncates to -1: within the 2 s of skew */
      {-S, "0s"},
      {-500 * MS, "0s"},
      {0, "0s"},
      {999 * MS, "0s"},
      {S, "1s"},
      {45 * S, "45s"},
      {2 * M - MS, "119s"},
      {2 * M, "2m"},
      {2 * M + S, "2m1s"},
      {5 * M + 16 * S, "5m16s"},
      {10 * M - S, "9m59s"},
      {10 * M, "10m"},
      {10 * M + 59 * S, "10m"},
      {79 * M, "79m"},
      {3 * H - S, "179m"},
      {3 * H, "3h"},
      {3 * H + 5 * M, "3h5m"},
      {8 * H - S, "7h59m"},
      {8 * H, "8h"},
      {12 * H, "12h"},
      {48 * H - S, "47h"},
      {48 * H, "2d"},
      {48 * H + H, "2d1h"},
      {3 * D, "3d"},
      {8 * D - S, "7d23h"},
      {8 * D, "8d"},
      {365 * D, "365d"},
      {2 * 365 * D - S, "729d"},
      {2 * 365 * D, "2y"},
      {2 * 365 * D + D, "2y1d"},
      {8 * 365 * D - S, "7y364d"},
      {8 * 365 * D, "8y"},
      {100 * 365 * D + 200 * D, "100y"},
  };
  for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *got = vmlet_human_duration(cases[i].d);
    if (g_strcmp0(got, cases[i].want) != 0)
      g_error("%" G_GINT64_FORMAT " us: expected %s, got %s", cases[i].d, cases[i].want, got);
  }
}

/* Nothing but an object: every cell empty but the three the node always knows. */
static void test_missing_fields(void)
{
  g_autofree char *out = format("[{}]", VMLET_TABLE_NORMAL);
  /* Columns as wide as their headers + 3: NAME 7, PHASE 8, NODE 7, IPADDRESS 12. */
  g_autofree char *h = expect_line("NAME", 7, "PHASE", 8, "NODE", 7, "IPADDRESS", 12, "AGE", LAST);
  g_autofree char *r = expect_line("", 7, "", 8, "", 7, "", 12, "", LAST);
  g_autofree char *want = g_strconcat(h, r, NULL);
  g_assert_cmpstr(out, ==, want);
  g_assert_cmpstr(r, ==, "                                  \n"); /* 34 spaces */

  g_autofree char *wide = format("[{\"status\": {}}]", VMLET_TABLE_WIDE);
  g_autofree char *wh = expect_line("NAME", 7, "PHASE", 8, "CORES", 8, "COREFRACTION", 15,
                                    "MEMORY", 9, "NEED RESTART", 15, "AGENT", 8, "MIGRATABLE",
                                    13, "NODE", 7, "IPADDRESS", 12, "AGE", LAST);
  g_autofree char *wr = expect_line("", 7, "", 8, "", 8, "", 15, "", 9, "False", 15, "False", 8,
                                    "False", 13, "", 7, "", 12, "", LAST);
  g_autofree char *wide_want = g_strconcat(wh, wr, NULL);
  g_assert_cmpstr(wide, ==, wide_want);
}

/* Mistyped values print as JSON would print them, or not at all; nothing crashes. */
static void test_odd_fields(void)
{
  g_autofree char *out = format(
      "[{\"metadata\": {\"name\": 42, \"creationTimestamp\": 1717243200},"
      "  \"spec\": {\"cpu\": {\"cores\": 2.5, \"coreFraction\": true},"
      "            \"memory\": {\"size\": null}},"
      "  \"status\": {\"phase\": {\"nested\": 1}, \"nodeName\": [\"a\"], \"ipAddress\": null,"
      "             \"restartAwaitingChanges\": {},"
      "             \"conditions\": [7, null, {\"type\": \"AgentReady\"},"
      "                              {\"type\": \"Migratable\", \"status\": false},"
      "                              {\"type\": \"Migratable\", \"status\": \"True\"}]}},"
      " {\"metadata\": \"x\", \"spec\": [], \"status\": \"Running\"},"
      " {\"metadata\": {\"name\": \"b\"}, \"spec\": {\"cpu\": \"2\", \"memory\": 5},"
      "  \"status\": {\"conditions\": {\"type\": \"AgentReady\"},"
      "             \"restartAwaitingChanges\": [],"
      "             \"phase\": \"Stopped\"}}]",
      VMLET_TABLE_WIDE);
  /* PHASE is as wide as "Stopped" (7 + 3); every other column as its header. */
  g_autofree char *h = expect_line("NAME", 7, "PHASE", 10, "CORES", 8, "COREFRACTION", 15,
                                   "MEMORY", 9, "NEED RESTART", 15, "AGENT", 8, "MIGRATABLE", 13,
                                   "NODE", 7, "IPADDRESS", 12, "AGE", LAST);
  /* Row 1: numbers and booleans as JSON text; the object PHASE, array NODE, null IPADDRESS
   * and null MEMORY empty; an object where the changes list belongs is no change; AgentReady
   * without a status is "False"; the first Migratable condition wins, and its boolean status
   * prints as JSON; a numeric creationTimestamp is no date. */
  g_autofree char *r1 = expect_line("42", 7, "", 10, "2.5", 8, "true", 15, "", 9, "False", 15,
                                    "False", 8, "false", 13, "", 7, "", 12, "", LAST);
  /* Row 2: metadata, spec and status of the wrong types. */
  g_autofree char *r2 = expect_line("", 7, "", 10, "", 8, "", 15, "", 9, "False", 15, "False",
                                    8, "False", 13, "", 7, "", 12, "", LAST);
  /* Row 3: cpu and memory not objects, conditions not an array, no changes. */
  g_autofree char *r3 = expect_line("b", 7, "Stopped", 10, "", 8, "", 15, "", 9, "False", 15,
                                    "False", 8, "False", 13, "", 7, "", 12, "", LAST);
  g_autofree char *want = g_strconcat(h, r1, r2, r3, NULL);
  g_assert_cmpstr(out, ==, want);
}

static void test_conditions(void)
{
  /* DVP's own condition wins over the list of changes; a VM without changes needs no
   * restart. */
  g_autofree char *out = format(
      "[{\"metadata\": {\"name\": \"a\"}, \"status\": {\"restartAwaitingChanges\": [],"
      "   \"conditions\": [{\"type\": \"AwaitingRestartToApplyConfiguration\","
      "                     \"status\": \"True\"}, {\"type\": \"AgentReady\","
      "                     \"status\": \"False\"}]}},"
      " {\"metadata\": {\"name\": \"b\"}, \"status\": {\"restartAwaitingChanges\": [{}],"
      "   \"conditions\": [{\"type\": \"AwaitingRestartToApplyConfiguration\","
      "                     \"status\": \"False\"}, {\"type\": \"Migratable\","
      "                     \"status\": \"Unknown\"}]}},"
      " {\"metadata\": {\"name\": \"c\"}, \"status\": {\"restartAwaitingChanges\": [{}]}},"
      " {\"metadata\": {\"name\": \"d\"}}]",
      VMLET_TABLE_WIDE);
  g_autofree char *h = expect_line("NAME", 7, "PHASE", 8, "CORES", 8, "COREFRACTION", 15,
                                   "MEMORY", 9, "NEED RESTART", 15, "AGENT", 8, "MIGRATABLE", 13,
                                   "NODE", 7, "IPADDRESS", 12, "AGE", LAST);
  g_autofree char *a = expect_line("a", 7, "", 8, "", 8, "", 15, "", 9, "True", 15, "False", 8,
                                   "False", 13, "", 7, "", 12, "", LAST);
  g_autofree char *b = expect_line("b", 7, "", 8, "", 8, "", 15, "", 9, "False", 15, "False", 8,
                                   "Unknown", 13, "", 7, "", 12, "", LAST);
  g_autofree char *c = expect_line("c", 7, "", 8, "", 8, "", 15, "", 9, "True", 15, "False", 8,
                                   "False", 13, "", 7, "", 12, "", LAST);
  g_autofree char *d = expect_line("d", 7, "", 8, "", 8, "", 15, "", 9, "False", 15, "False", 8,
                                   "False", 13, "", 7, "", 12, "", LAST);
  g_autofree char *want = g_strconcat(h, a, b, c, d, NULL);
  g_assert_cmpstr(out, ==, want);
}

static char *age_of(const char *timestamp)
{
  g_autofree char *json =
      g_strdup_printf("[{\"metadata\": {\"name\": \"x\", \"creationTimestamp\": \"%s\"}}]",
                      timestamp);
  g_autofree char *out = format(json, VMLET_TABLE_NORMAL);
  /* The last line's text after the IPADDRESS column. */
  const char *row = strchr(out, '\n') + 1;
  g_assert_cmpuint(strlen(row), >=, 35);
  return g_strndup(row + 34, strlen(row + 34) - 1);
}

static void test_age(void)
{
  const struct {
    const char *timestamp;
    const char *want;
  } cases[] = {
      {"2024-06-01T11:49:00Z", "11m"},
      {"2024-06-01T11:49:00z", ""}, /* RFC 3339 allows lower case, Go does not */
      {"2024-06-01t11:49:00Z", ""},
      {"2024-06-01T13:49:00+02:00", "11m"},
      {"2024-06-01T06:49:00-05:00", "11m"},
      {"2024-06-01T11:59:00.5Z", "59s"},
      {"2024-06-01T11:59:59.999999Z", "0s"},
      {"2024-06-01T12:00:01Z", "0s"},        /* one second ahead: clock skew */
      {"2024-06-01T12:00:02Z", "<invalid>"}, /* further ahead */
      {"2021-06-01T12:00:00Z", "3y1d"},      /* 2024 is a leap year */
      {"0001-01-01T00:00:00Z", "<unknown>"}, /* Go's zero time */
      {"2024-06-01 11:49:00Z", ""},          /* not RFC 3339: no cell */
      {"2024-06-01T11:49:00", ""},           /* no zone */
      {"2024-06-01T11:49Z", ""},
      {"2024-W22-6T11:49:00Z", ""},
      {"2024-06-01T11:49:00.Z", ""},
      {"2024-06-01T11:49:00+0200", ""},
      {"2024-13-01T11:49:00Z", ""},
      {"yesterday", ""},
      {"", ""},
  };
  for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *got = age_of(cases[i].timestamp);
    if (g_strcmp0(got, cases[i].want) != 0)
      g_error("%s: expected \"%s\", got \"%s\"", cases[i].timestamp, cases[i].want, got);
  }
}

static void test_cell_sanitizing(void)
{
  g_autofree char *long_name = g_strnfill(300, 'n');
  g_autofree char *json = g_strdup_printf(
      "[{\"metadata\": {\"name\": \"two\\nlines\"}, \"status\": {\"phase\": \"a\\tb\\u001b[31m\"}},"
      " {\"metadata\": {\"name\": \"%s\"}, \"status\": {\"phase\": \"\\r\"}},"
      " {\"metadata\": {\"name\": \"h\\u00e9\\u00e9\"}, \"status\": {\"phase\": \"\\u007f\"}}]",
      long_name);
  g_autofree char *out = format(json, VMLET_TABLE_NORMAL);
  /* NAME: the cut name with its marker is 256 wide, + 3. PHASE: "a^Ib^[[31m" is 10, + 3. */
  g_autofree char *h = expect_line("NAME", 259, "PHASE", 13, "NODE", 7, "IPADDRESS", 12, "AGE",
                                   LAST);
  g_autofree char *cut = g_strnfill(VMLET_TABLE_MAX_CELL - 3, 'n');
  g_autofree char *cut_name = g_strconcat(cut, "...", NULL);
  /* A line break ends the cell ("..."); a tab and ESC become ^I and ^[ (kubectl's form for
   * ESC). */
  g_autofree char *r1 = expect_line("two...", 259, "a^Ib^[[31m", 13, "", 7, "", 12, "", LAST);
  /* Cut at VMLET_TABLE_MAX_CELL; a lone \r is a line break: nothing but the marker. */
  g_autofree char *r2 = expect_line(cut_name, 259, "...", 13, "", 7, "", 12, "", LAST);
  /* Width counts characters, not bytes: "héé" is 3 wide; DEL is ^?. */
  g_autofree char *r3 = expect_line("h\xc3\xa9\xc3\xa9", 259, "^?", 13, "", 7, "", 12, "", LAST);
  g_autofree char *want = g_strconcat(h, r1, r2, r3, NULL);
  g_assert_cmpstr(out, ==, want);
  g_assert_cmpuint(strlen(cut_name), ==, VMLET_TABLE_MAX_CELL);
}

static void test_list_bounds(void)
{
  g_autoptr(GDateTime) now = now_time();
  g_autoptr(GError) error = NULL;

  /* No VMs: no header either (kubectl prints nothing, and says so on stderr). */
  g_autofree char *empty = format("[]", VMLET_TABLE_WIDE);
  g_assert_cmpstr(empty, ==, "");

  g_autoptr(JsonArray) bad = parse_array("[{\"metadata\": {\"name\": \"a\"}}, 3]");
  g_autofree char *out = vmlet_table_format_vms(bad, now, VMLET_TABLE_NORMAL, &error);
  g_assert_null(out);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_clear_error(&error);

  g_autoptr(JsonArray) many = json_array_new();
  for (int i = 0; i <= VMLET_TABLE_MAX_ROWS; i++)
    json_array_add_object_element(many, json_object_new());
  g_autofree char *out2 = vmlet_table_format_vms(many, now, VMLET_TABLE_NORMAL, &error);
  g_assert_null(out2);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
  g_clear_error(&error);

  json_array_remove_element(many, 0);
  g_autofree char *out3 = vmlet_table_format_vms(many, now, VMLET_TABLE_NORMAL, &error);
  g_assert_no_error(error);
  g_assert_nonnull(out3);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/table/seed-get", test_seed_get);
  g_test_add_func("/table/seed-wide", test_seed_wide);
  g_test_add_func("/table/seed-watch", test_seed_watch);
  g_test_add_func("/table/human-duration", test_human_duration);
  g_test_add_func("/table/missing-fields", test_missing_fields);
  g_test_add_func("/table/odd-fields", test_odd_fields);
  g_test_add_func("/table/conditions", test_conditions);
  g_test_add_func("/table/age", test_age);
  g_test_add_func("/table/cell-sanitizing", test_cell_sanitizing);
  g_test_add_func("/table/list-bounds", test_list_bounds);
  return g_test_run();
}
