/* Golden tests for spec -> QEMU argv (libvirt's qemuxmlconftest, Proxmox's cfg2cmd).
 *
 * For every NAME.json in tests/golden: render it on a fixed node (defaults, TCG, the
 * fixture drop-ins in tests/golden/node, the classes in qemu-profiles) and compare with
 *   NAME.args  one argument per line, preceded by "# warning: ..." lines, or
 *   NAME.err   the exact error text for a rejected spec.
 * VMLET_REGENERATE_GOLDEN=1 rewrites the expected files instead of comparing. A .args or
 * .err without its .json, or a case with both, fails: stale goldens are not kept. */
#include <string.h>

#include <glib/gstdio.h>

#include "fileio.h"
#include "qemu-argv.h"
#include "render.h"

static const char *golden_dir;
static const char *profiles_dir;
static gboolean regenerate;

static VmletNode *fixture_node(void)
{
  VmletNode *node = vmlet_node_new_default();
  g_free(node->name);
  node->name = g_strdup("golden-node");
  g_free(node->config_dir);
  node->config_dir = g_build_filename(golden_dir, "node", NULL);
  g_free(node->profiles_dir);
  node->profiles_dir = g_strdup(profiles_dir);
  node->accel = VMLET_ACCEL_TCG;
  return node;
}

static char *render_case(const char *json_path, gboolean *rejected)
{
  g_autoptr(VmletNode) node = fixture_node();
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(VmletInventory) inv = vmlet_node_inventory(node, problems, NULL);
  /* The fixture drop-ins themselves must be valid, or every case would test less. */
  for (guint i = 0; i < problems->len; i++)
    g_test_message("fixture problem: %s", (char *)problems->pdata[i]);
  g_assert_cmpuint(problems->len, ==, 0);

  g_autofree char *data = NULL;
  gsize len = 0;
  g_autoptr(GError) error = NULL;
  g_autofree char *base = g_path_get_basename(json_path);
  GString *out = g_string_new(NULL);
  g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
  /* Some cases are deliberately larger than the drop-in limit; read them unbounded. */
  if (!g_file_get_contents(json_path, &data, &len, &error))
    g_error("%s", error->message);
  g_autoptr(VmPlan) plan = vmlet_plan_document(node, inv, base, data, len, warnings, &error);
  *rejected = plan == NULL;
  if (!plan) {
    g_string_append_printf(out, "%s\n", error->message);
    return g_string_free(out, FALSE);
  }
  for (guint i = 0; i < warnings->len; i++)
    g_string_append_printf(out, "# warning: %s\n", (char *)warnings->pdata[i]);
  g_auto(GStrv) args = vm_qemu_argv(plan);
  for (guint i = 0; args[i]; i++)
    g_string_append_printf(out, "%s\n", args[i]);
  return g_string_free(out, FALSE);
}

static void test_case(gconstpointer data)
{
  const char *name = data;
  g_autofree char *json = g_strdup_printf("%s/%s.json", golden_dir, name);
  g_autofree char *args = g_strdup_printf("%s/%s.args", golden_dir, name);
  g_autofree char *err = g_strdup_printf("%s/%s.err", golden_dir, name);
  gboolean rejected = FALSE;
  g_autofree char *got = render_case(json, &rejected);
  const char *expected_path = rejected ? err : args;
  const char *other_path = rejected ? args : err;

  if (regenerate) {
    g_autoptr(GError) error = NULL;
    g_assert_true(g_file_set_contents(expected_path, got, -1, &error));
    g_unlink(other_path);
    return;
  }
  if (g_file_test(other_path, G_FILE_TEST_EXISTS))
    g_error("%s exists, but the case now %s; run with VMLET_REGENERATE_GOLDEN=1 after checking",
            other_path, rejected ? "fails" : "renders");
  g_autofree char *want = NULL;
  g_autoptr(GError) error = NULL;
  if (!g_file_get_contents(expected_path, &want, NULL, &error))
    g_error("%s: %s (regenerate with VMLET_REGENERATE_GOLDEN=1)", expected_path, error->message);
  g_assert_cmpstr(got, ==, want);
}

static void test_no_orphans(void)
{
  g_autoptr(GDir) dir = g_dir_open(golden_dir, 0, NULL);
  g_assert_nonnull(dir);
  const char *f;
  guint checked = 0;
  while ((f = g_dir_read_name(dir))) {
    if (!g_str_has_suffix(f, ".args") && !g_str_has_suffix(f, ".err"))
      continue;
    g_autofree char *stem = g_strndup(f, strrchr(f, '.') - f);
    g_autofree char *json = g_strdup_printf("%s/%s.json", golden_dir, stem);
    if (!g_file_test(json, G_FILE_TEST_EXISTS))
      g_error("%s/%s has no %s.json: delete it or add the case", golden_dir, f, stem);
    checked++;
  }
  g_assert_cmpuint(checked, >=, 20);
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  golden_dir = g_getenv("VMLET_GOLDEN_DIR");
  profiles_dir = g_getenv("VMLET_PROFILES_DIR");
  g_assert_nonnull(golden_dir);
  g_assert_nonnull(profiles_dir);
  regenerate = g_strcmp0(g_getenv("VMLET_REGENERATE_GOLDEN"), "1") == 0;

  g_autoptr(GDir) dir = g_dir_open(golden_dir, 0, NULL);
  g_assert_nonnull(dir);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *f;
  while ((f = g_dir_read_name(dir)))
    if (g_str_has_suffix(f, ".json"))
      g_ptr_array_add(names, g_strndup(f, strlen(f) - 5));
  g_ptr_array_sort(names, compare_names);
  for (guint i = 0; i < names->len; i++) {
    g_autofree char *path = g_strdup_printf("/golden/%s", (char *)names->pdata[i]);
    g_test_add_data_func(path, names->pdata[i], test_case);
  }
  if (!regenerate)
    g_test_add_func("/golden/no-orphans", test_no_orphans);
  return g_test_run();
}
