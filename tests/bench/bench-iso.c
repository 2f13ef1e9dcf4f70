/* In-process NoCloud seed ISO versus the xorrisofs child KubeVirt runs per VM start.
 * Usage: bench-iso [SEED.json | --user-data FILE] [BUILDS]
 * SEED.json defaults to $VMLET_GOLDEN_DIR/seed-linux-vm.json (tests/golden); its
 * spec.provisioning.userData is the user data. Both measurements run in this one process,
 * into a tmpfs directory, and one JSON object is printed. */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "iso.h"
#include "nocloud.h"

#define DEFAULT_BUILDS 200
#define SUBPROCESS_RUNS 30
#define MAX_INPUT_BYTES (4 * 1024 * 1024)

static int cmp_i64(const void *a, const void *b)
{
  gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;
  return (x > y) - (x < y);
}

static double median_us(gint64 *v, gsize n)
{
  qsort(v, n, sizeof *v, cmp_i64);
  return n % 2 ? (double)v[n / 2] : (double)(v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static double mean_us(const gint64 *v, gsize n)
{
  double sum = 0;
  for (gsize i = 0; i < n; i++)
    sum += (double)v[i];
  return sum / (double)n;
}

/* CPU time of the whole process (this thread and libisofs's writer threads), in us. A
 * loaded host stretches wall time with scheduling waits at each thread hand-off; CPU time
 * shows what a build itself costs. */
static double cpu_us(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static char *user_data_from_seed(const char *path, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_mapped_file(parser, path, error))
    return NULL;
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *obj = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  const char *keys[] = {"spec", "provisioning"};
  for (gsize i = 0; obj && i < G_N_ELEMENTS(keys); i++) {
    JsonNode *n = json_object_get_member(obj, keys[i]);
    obj = n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
  }
  const char *ud = obj ? json_object_get_string_member_with_default(obj, "userData", NULL) : NULL;
  if (!ud) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                "%s: no spec.provisioning.userData string", path);
    return NULL;
  }
  return g_strdup(ud);
}

static char *tmpfs_dir(void)
{
  /* tmpfs, so that both sides measure building, not the disk. */
  const char *base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();
  char *dir = g_build_filename(base, "bench-iso-XXXXXX", NULL);
  if (!g_mkdtemp_full(dir, 0700)) {
    g_printerr("cannot create a directory in %s\n", base);
    exit(1);
  }
  return dir;
}

int main(int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *user_data = NULL;
  gsize ud_len = 0;
  int argi = 1;
  if (argi + 1 < argc && g_str_equal(argv[argi], "--user-data")) {
    if (!g_file_get_contents(argv[argi + 1], &user_data, &ud_len, &error)) {
      g_printerr("%s\n", error->message);
      return 1;
    }
    argi += 2;
  } else {
    g_autofree char *seed = NULL;
    if (argi < argc && !g_ascii_isdigit(argv[argi][0]))
      seed = g_strdup(argv[argi++]);
    else
      seed = g_build_filename(g_getenv("VMLET_GOLDEN_DIR") ? g_getenv("VMLET_GOLDEN_DIR")
                                                          : "tests/golden",
                              "seed-linux-vm.json", NULL);
    user_data = user_data_from_seed(seed, &error);
    if (!user_data) {
      g_printerr("%s\n", error->message);
      return 1;
    }
    ud_len = strlen(user_data);
  }
  if (ud_len > MAX_INPUT_BYTES) {
    g_printerr("user data is larger than %d bytes\n", MAX_INPUT_BYTES);
    return 1;
  }
  long builds = argi < argc ? strtol(argv[argi], NULL, 10) : DEFAULT_BUILDS;
  if (builds < 1 || builds > 100000) {
    g_printerr("BUILDS must be 1 to 100000\n");
    return 1;
  }

  const char *ns = "default", *name = "seed-linux-vm";
  g_autofree char *dir = tmpfs_dir();
  g_autofree char *iso = g_build_filename(dir, "cidata.iso", NULL);

  /* The first build pays for iso_init(); reported apart, as the daemon pays it once. */
  gint64 t0 = g_get_monotonic_time();
  if (!vmlet_nocloud_write(iso, ns, name, user_data, ud_len, NULL, &error)) {
    g_printerr("%s\n", error->message);
    return 1;
  }
  gint64 first_us = g_get_monotonic_time() - t0;

  /* Full path: instance-id, meta-data, image, temp file, fsync, rename, directory fsync. */
  g_autofree gint64 *write_us = g_new(gint64, builds);
  for (long i = 0; i < builds; i++) {
    gint64 a = g_get_monotonic_time();
    if (!vmlet_nocloud_write(iso, ns, name, user_data, ud_len, NULL, &error)) {
      g_printerr("%s\n", error->message);
      return 1;
    }
    write_us[i] = g_get_monotonic_time() - a;
  }
  /* The image alone, in memory. */
  g_autofree char *instance_id = vmlet_nocloud_instance_id(ns, name, user_data, ud_len);
  g_autofree char *meta = vmlet_nocloud_meta_data(instance_id, name);
  const VmletIsoFile files[] = {{"user-data", user_data, ud_len},
                                {"meta-data", meta, strlen(meta)}};
  g_autofree gint64 *build_us = g_new(gint64, builds);
  gsize iso_bytes = 0;
  double cpu0 = cpu_us();
  for (long i = 0; i < builds; i++) {
    g_autoptr(GBytes) image = NULL;
    gint64 a = g_get_monotonic_time();
    if (!vmlet_iso_build(VMLET_NOCLOUD_VOLUME_ID, files, G_N_ELEMENTS(files), &image,
                         &error)) {
      g_printerr("%s\n", error->message);
      return 1;
    }
    build_us[i] = g_get_monotonic_time() - a;
    iso_bytes = g_bytes_get_size(image);
  }
  double build_cpu = (cpu_us() - cpu0) / (double)builds;
  double write_median = median_us(write_us, (gsize)builds);
  double write_mean = mean_us(write_us, (gsize)builds);
  double build_median = median_us(build_us, (gsize)builds);

  /* The same two files through the tool KubeVirt runs. */
  g_autofree char *tool = g_find_program_in_path("xorrisofs");
  gboolean as_mkisofs = FALSE;
  if (!tool) {
    tool = g_find_program_in_path("xorriso");
    as_mkisofs = tool != NULL;
  }
  double sub_median = -1, sub_mean = -1;
  if (tool) {
    g_autofree char *src = g_build_filename(dir, "src", NULL);
    g_autofree char *ud_path = g_build_filename(src, "user-data", NULL);
    g_autofree char *md_path = g_build_filename(src, "meta-data", NULL);
    g_autofree char *out = g_build_filename(dir, "xorrisofs.iso", NULL);
    if (g_mkdir_with_parents(src, 0700) < 0 ||
        !g_file_set_contents(ud_path, user_data, (gssize)ud_len, &error) ||
        !g_file_set_contents(md_path, meta, -1, &error)) {
      g_printerr("cannot prepare %s: %s\n", src, error ? error->message : "mkdir failed");
      return 1;
    }
    GPtrArray *args = g_ptr_array_new();
    g_ptr_array_add(args, tool);
    if (as_mkisofs) {
      g_ptr_array_add(args, "-as");
      g_ptr_array_add(args, "mkisofs");
    }
    const char *rest[] = {"-volid", "cidata", "-joliet", "-rock", "-o", out, src};
    for (gsize i = 0; i < G_N_ELEMENTS(rest); i++)
      g_ptr_array_add(args, (gpointer)rest[i]);
    g_ptr_array_add(args, NULL);
    gint64 sub_us[SUBPROCESS_RUNS];
    for (int i = 0; i < SUBPROCESS_RUNS; i++) {
      unlink(out);
      int status = 0;
      gint64 a = g_get_monotonic_time();
      if (!g_spawn_sync(NULL, (char **)args->pdata, NULL,
                        G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                        NULL, NULL, &status, &error) ||
          !g_spawn_check_wait_status(status, &error)) {
        g_printerr("%s: %s\n", tool, error->message);
        return 1;
      }
      sub_us[i] = g_get_monotonic_time() - a;
    }
    g_ptr_array_free(args, TRUE);
    sub_median = median_us(sub_us, SUBPROCESS_RUNS);
    sub_mean = mean_us(sub_us, SUBPROCESS_RUNS);
    unlink(out);
    unlink(ud_path);
    unlink(md_path);
    rmdir(src);
  }
  unlink(iso);
  rmdir(dir);

  printf("{\"user_data_bytes\": %" G_GSIZE_FORMAT ", \"iso_bytes\": %" G_GSIZE_FORMAT
         ", \"builds\": %ld, \"inproc_first_us\": %" G_GINT64_FORMAT
         ", \"inproc_median_us\": %.1f, \"inproc_mean_us\": %.1f"
         ", \"inproc_build_only_median_us\": %.1f, \"inproc_build_only_cpu_us\": %.1f",
         ud_len, iso_bytes, builds, first_us, write_median, write_mean, build_median, build_cpu);
  if (tool) {
    double ratio = sub_median / write_median;
    printf(", \"subprocess\": \"%s%s -volid cidata -joliet -rock\", \"subprocess_runs\": %d"
           ", \"subprocess_median_us\": %.1f, \"subprocess_mean_us\": %.1f, \"ratio\": %.1f"
           ", \"target_met\": %s}\n",
           tool, as_mkisofs ? " -as mkisofs" : "", SUBPROCESS_RUNS, sub_median, sub_mean, ratio,
           ratio >= 20 && write_median < 1000 ? "true" : "false");
  } else {
    printf(", \"subprocess\": null, \"ratio\": null, \"target_met\": null}\n");
  }
  return 0;
}
