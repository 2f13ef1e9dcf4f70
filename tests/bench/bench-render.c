/* In-process cost of parse + validate + resolve + render for a batch of spec files.
 * Usage: bench-render NODE_CONFIG_DIR PROFILES_DIR COUNT FILE...
 * Renders COUNT specs, cycling through FILE..., and prints one JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-argv.h"
#include "render.h"

int main(int argc, char **argv)
{
  if (argc < 5) {
    fprintf(stderr, "usage: bench-render CONFIG_DIR PROFILES_DIR COUNT FILE...\n");
    return 2;
  }
  g_autoptr(VmletNode) node = vmlet_node_new_default();
  g_free(node->config_dir);
  node->config_dir = g_strdup(argv[1]);
  g_free(node->profiles_dir);
  node->profiles_dir = g_strdup(argv[2]);
  node->accel = VMLET_ACCEL_TCG;
  long count = strtol(argv[3], NULL, 10);
  int nfiles = argc - 4;
  g_autoptr(GPtrArray) texts = g_ptr_array_new_with_free_func(g_free);
  GArray *lens = g_array_new(FALSE, FALSE, sizeof(gsize));
  for (int i = 0; i < nfiles; i++) {
    char *data = NULL;
    gsize len = 0;
    if (!g_file_get_contents(argv[4 + i], &data, &len, NULL))
      return 1;
    g_ptr_array_add(texts, data);
    g_array_append_val(lens, len);
  }
  /* The inventory (classes, disk and image drop-ins) is loaded once, as the daemon does. */
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(VmletInventory) inv = vmlet_node_inventory(node, NULL, NULL);
  gint64 t1 = g_get_monotonic_time();
  gsize argv_bytes = 0;
  for (long i = 0; i < count; i++) {
    int k = (int)(i % nfiles);
    g_autoptr(GError) error = NULL;
    g_autoptr(VmPlan) plan = vmlet_plan_document(node, inv, argv[4 + k], texts->pdata[k],
                                                 g_array_index(lens, gsize, k), NULL, &error);
    if (!plan) {
      fprintf(stderr, "%s\n", error->message);
      return 1;
    }
    g_auto(GStrv) args = vm_qemu_argv(plan);
    for (guint j = 0; args[j]; j++)
      argv_bytes += strlen(args[j]);
  }
  gint64 t2 = g_get_monotonic_time();
  printf("{\"specs\": %ld, \"files\": %d, \"inventory_load_us\": %" G_GINT64_FORMAT
         ", \"render_total_us\": %" G_GINT64_FORMAT ", \"per_spec_us\": %.2f, \"argv_bytes\": %"
         G_GSIZE_FORMAT "}\n",
         count, nfiles, t1 - t0, t2 - t1, (double)(t2 - t1) / (double)count, argv_bytes);
  g_array_unref(lens);
  return 0;
}
