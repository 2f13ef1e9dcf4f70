/* The migration journal (agent/migrate/journal.c): what is saved loads back the same, and
 * what a load accepts is what recovery may act on — names that stay inside the state
 * directory, only absolute paths in the list of images to remove. */
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

#include "journal.h"

#define ID "0b7c2c0e-3f43-4d8e-9d6f-5a0d3f1c2b11"

static char *journal_file(const char *dir)
{
  return g_build_filename(dir, "migrations", ID ".json", NULL);
}

static void test_round_trip(void)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-journal-XXXXXX", NULL);
  g_autoptr(VmletMigJournal) j = vmlet_mig_journal_new(ID, VMLET_MIG_DESTINATION, "prod", "vm1",
                                                       "hv-1", 7);
  g_ptr_array_add(j->created, g_strdup("/var/lib/vmlet/disks/prod/root.qcow2"));
  JsonArray *a = json_array_new();
  json_array_add_string_element(a, "the VM");
  j->manifests = json_node_init_array(json_node_alloc(), a);
  json_array_unref(a);
  j->reason = g_strdup("why");
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_mig_journal_step(j, dir, VMLET_MIG_PREPARED, &error));
  g_assert_no_error(error);
  g_autoptr(VmletMigJournal) back = vmlet_mig_journal_find(dir, ID, &error);
  g_assert_no_error(error);
  g_assert_cmpint(back->step, ==, VMLET_MIG_PREPARED);
  g_assert_cmpint(back->role, ==, VMLET_MIG_DESTINATION);
  g_assert_cmpstr(back->namespace, ==, "prod");
  g_assert_cmpstr(back->name, ==, "vm1");
  g_assert_cmpstr(back->peer, ==, "hv-1");
  g_assert_cmpstr(back->reason, ==, "why");
  g_assert_cmpuint(back->generation, ==, 7);
  g_assert_cmpuint(back->created->len, ==, 1);
  g_assert_cmpstr(back->created->pdata[0], ==, "/var/lib/vmlet/disks/prod/root.qcow2");
  g_assert_true(json_node_equal(back->manifests, j->manifests));
  g_autoptr(GPtrArray) all = vmlet_mig_journal_list(dir);
  g_assert_cmpuint(all->len, ==, 1);
  /* Outcomes are pruned once old, steps under way never. */
  vmlet_mig_journal_prune(dir, G_MAXINT64);
  g_autoptr(VmletMigJournal) kept = vmlet_mig_journal_find(dir, ID, NULL);
  g_assert_nonnull(kept);
  g_assert_true(vmlet_mig_journal_step(back, dir, VMLET_MIG_ABORTED, NULL));
  vmlet_mig_journal_prune(dir, G_MAXINT64);
  g_autoptr(GPtrArray) none = vmlet_mig_journal_list(dir);
  g_assert_cmpuint(none->len, ==, 0);
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
  g_assert_cmpint(system(cmd), ==, 0);
}

/* A journal that names what is no VM (a namespace or name that would reach another path)
 * or is not a migration id is refused; the images to remove are absolute paths only. */
static void test_load_checks(void)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-journal-XXXXXX", NULL);
  g_autofree char *mig = g_build_filename(dir, "migrations", NULL);
  g_assert_cmpint(g_mkdir(mig, 0700), ==, 0);
  g_autofree char *path = journal_file(dir);
  static const char *const bad[] = {
      "{\"version\":1,\"id\":\"" ID "\",\"role\":\"Destination\",\"step\":\"Prepared\","
      "\"namespace\":\"../etc\",\"name\":\"vm1\",\"peer\":\"hv-1\",\"generation\":1}",
      "{\"version\":1,\"id\":\"" ID "\",\"role\":\"Destination\",\"step\":\"Prepared\","
      "\"namespace\":\"prod\",\"name\":\"a/b\",\"peer\":\"hv-1\",\"generation\":1}",
      "{\"version\":1,\"id\":\"../../x\",\"role\":\"Destination\",\"step\":\"Prepared\","
      "\"namespace\":\"prod\",\"name\":\"vm1\",\"peer\":\"hv-1\",\"generation\":1}",
      "{\"version\":2,\"id\":\"" ID "\",\"role\":\"Destination\",\"step\":\"Prepared\","
      "\"namespace\":\"prod\",\"name\":\"vm1\",\"peer\":\"hv-1\",\"generation\":1}",
  };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_assert_true(g_file_set_contents(path, bad[i], -1, NULL));
    g_autoptr(GError) error = NULL;
    g_autoptr(VmletMigJournal) j = vmlet_mig_journal_load(path, &error);
    g_assert_null(j);
    g_assert_nonnull(error);
  }
  g_assert_true(g_file_set_contents(
      path,
      "{\"version\":1,\"id\":\"" ID "\",\"role\":\"Destination\",\"step\":\"Prepared\","
      "\"namespace\":\"prod\",\"name\":\"vm1\",\"peer\":\"hv-1\",\"generation\":1,"
      "\"created\":[\"relative.qcow2\",\"/a/../../etc/shadow\",\"/ok/root.qcow2\",3]}",
      -1, NULL));
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletMigJournal) j = vmlet_mig_journal_load(path, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(j->created->len, ==, 1);
  g_assert_cmpstr(j->created->pdata[0], ==, "/ok/root.qcow2");
  g_assert_null(vmlet_mig_journal_find(dir, "../x", NULL));
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
  g_assert_cmpint(system(cmd), ==, 0);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/mig-journal/round-trip", test_round_trip);
  g_test_add_func("/mig-journal/load-checks", test_load_checks);
  return g_test_run();
}
