/* NoCloud seed and Sysprep CD: the images are read back by tools that share no code with
 * libisofs's writer (isoinfo from genisoimage; xorriso reads through libisofs's reader,
 * not its writer), and compared byte for byte with the input. */
#include <errno.h>
#include <gio/gio.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "iso.h"
#include "nocloud.h"
#include "vmlet-error.h"

/* --- helpers ------------------------------------------------------------------------ */

static gboolean need_tools(const char *const *tools)
{
  for (gsize i = 0; tools[i]; i++) {
    g_autofree char *found = g_find_program_in_path(tools[i]);
    if (!found) {
      g_autofree char *why = g_strdup_printf("%s is not installed (apt-get install %s)",
                                             tools[i],
                                             g_str_equal(tools[i], "isoinfo") ? "genisoimage"
                                                                              : tools[i]);
      g_test_skip(why);
      return FALSE;
    }
  }
  return TRUE;
}

/* Runs argv, asserts exit status 0, returns stdout as bytes (binary-safe). */
static GBytes *run_ok(const char *const *argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *cmd = g_strjoinv(" ", (char **)argv);
  g_test_message("run: %s", cmd);
  g_autoptr(GSubprocess) proc = g_subprocess_newv(
      argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error(error);
  GBytes *out = NULL;
  g_autoptr(GBytes) err = NULL;
  g_subprocess_communicate(proc, NULL, NULL, &out, &err, &error);
  g_assert_no_error(error);
  if (!g_subprocess_get_successful(proc)) {
    gsize len = 0;
    const char *text = g_bytes_get_data(err, &len);
    g_test_message("stderr: %.*s", (int)len, text ? text : "");
    g_error("%s failed", cmd);
  }
  return out;
}

static char *run_text(const char *const *argv)
{
  g_autoptr(GBytes) out = run_ok(argv);
  gsize len = 0;
  const char *data = g_bytes_get_data(out, &len);
  return g_strndup(data ? data : "", len);
}

static int cmp_strp(gconstpointer a, gconstpointer b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The strings sorted and joined with ","; consumes nothing, names keeps its contents. */
static char *sorted_join(GPtrArray *names)
{
  g_ptr_array_sort(names, cmp_strp);
  GString *out = g_string_new(NULL);
  for (guint i = 0; i < names->len; i++) {
    if (i > 0)
      g_string_append_c(out, ',');
    g_string_append(out, g_ptr_array_index(names, i));
  }
  return g_string_free(out, FALSE);
}

static void assert_bytes_equal(GBytes *got, const void *want, gsize want_len)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(got, &len);
  g_assert_cmpmem(data, len, want, want_len);
}

/* Sorted file names from "isoinfo -f" for one of the three trees ("-J", "-R" or NULL for
 * plain ECMA-119), joined with ",". */
static char *isoinfo_names(const char *iso, const char *tree)
{
  const char *argv_tree[] = {"isoinfo", tree, "-f", "-i", iso, NULL};
  const char *argv_plain[] = {"isoinfo", "-f", "-i", iso, NULL};
  g_autofree char *text = run_text(tree ? argv_tree : argv_plain);
  g_auto(GStrv) lines = g_strsplit(g_strstrip(text), "\n", -1);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  for (gsize i = 0; lines[i]; i++)
    g_ptr_array_add(names, g_strdup(lines[i]));
  return sorted_join(names);
}

/* Sorted names from xorriso's own listing, the way KubeVirt-era tooling inspects seeds. */
static char *xorriso_names(const char *iso)
{
  g_autofree char *dev = g_strconcat("stdio:", iso, NULL);
  const char *argv[] = {"xorriso", "-indev", dev, "-find", "/", "-exec", "lsdl", NULL};
  g_autofree char *text = run_text(argv);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (gsize i = 0; lines[i]; i++) {
    /* -r--r--r--    1 0        0              56 Jan  1  2000 '/meta-data' */
    const char *q = strstr(lines[i], " '/");
    if (!q)
      continue;
    g_autofree char *name = g_strdup(q + 2);
    gsize l = strlen(name);
    g_assert_cmpint(name[l - 1], ==, '\'');
    name[l - 1] = '\0';
    if (!g_str_equal(name, "/"))
      g_ptr_array_add(names, g_steal_pointer(&name));
    if (lines[i][0] == '-')
      g_assert_true(g_str_has_prefix(lines[i], "-r--r--r--"));
  }
  return sorted_join(names);
}

static char *line_value(const char *text, const char *prefix)
{
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (gsize i = 0; lines[i]; i++) {
    if (g_str_has_prefix(lines[i], prefix))
      return g_strstrip(g_strdup(lines[i] + strlen(prefix)));
  }
  return NULL;
}

static char *make_tmpdir(void)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp("test-nocloud-XXXXXX", &error);
  g_assert_no_error(error);
  return dir;
}

static void rm_rf(const char *path)
{
  struct stat st;
  if (lstat(path, &st) < 0)
    return;
  if (S_ISDIR(st.st_mode)) {
    /* xorriso extracts directories read-only; make them writable to empty them. */
    chmod(path, 0700);
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name(dir))) {
      g_autofree char *child = g_build_filename(path, name, NULL);
      rm_rf(child);
    }
    g_assert_cmpint(rmdir(path), ==, 0);
  } else {
    g_assert_cmpint(unlink(path), ==, 0);
  }
}

static char *dir_listing(const char *path)
{
  g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
  g_assert_nonnull(dir);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(dir)))
    g_ptr_array_add(names, g_strdup(name));
  return sorted_join(names);
}

static GBytes *read_file(const char *path)
{
  g_autoptr(GError) error = NULL;
  char *data = NULL;
  gsize len = 0;
  g_file_get_contents(path, &data, &len, &error);
  g_assert_no_error(error);
  return g_bytes_new_take(data, len);
}

/* A #cloud-config document of exactly len bytes (len >= 64). */
static char *cloud_config_of_len(gsize len)
{
  GString *s = g_string_new("#cloud-config\nwrite_files:\n- path: /etc/pad\n  content: |\n");
  while (s->len < len - 1) {
    g_string_append(s, "    ");
    gsize room = len - 1 - s->len;
    gsize n = MIN(room, (gsize)60);
    for (gsize i = 0; i < n; i++)
      g_string_append_c(s, (char)('a' + (i % 26)));
    if (s->len < len - 1)
      g_string_append_c(s, '\n');
  }
  while (s->len < len)
    g_string_append_c(s, '\n');
  g_assert_cmpuint(s->len, ==, len);
  return g_string_free(s, FALSE);
}

/* --- ISO writer --------------------------------------------------------------------- */

static void test_iso_readback(void)
{
  const char *const tools[] = {"xorriso", "isoinfo", NULL};
  if (!need_tools(tools))
    return;
  g_autofree char *dir = make_tmpdir();
  g_autofree char *iso = g_build_filename(dir, "seed.iso", NULL);

  g_autofree char *user_data = cloud_config_of_len(2048);
  guint8 blob[3000];
  for (gsize i = 0; i < sizeof blob; i++)
    blob[i] = (guint8)(i * 7 + (i >> 8)); /* every byte value, NULs included */
  const char *meta = "instance-id: vm-1-0123456789abcdef\nlocal-hostname: vm-1\n";
  const char *net = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";
  const VmletIsoFile files[] = {
      {"user-data", user_data, 2048},
      {"meta-data", meta, strlen(meta)},
      {"network-config", net, strlen(net)},
      {"blob.bin", blob, sizeof blob},
      {"autounattend.xml", "<unattend/>", 11},
      {"empty", NULL, 0},
  };
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_iso_write(iso, "cidata", files, G_N_ELEMENTS(files), &error));
  g_assert_no_error(error);

  struct stat st;
  g_assert_cmpint(stat(iso, &st), ==, 0);
  g_assert_true(S_ISREG(st.st_mode));
  g_assert_cmpint(st.st_mode & 07777, ==, 0600);

  /* Exact file lists: Rock Ridge and Joliet keep the names; ECMA-119 has its own. */
  const char *want = "/autounattend.xml,/blob.bin,/empty,/meta-data,/network-config,/user-data";
  g_autofree char *xnames = xorriso_names(iso);
  g_assert_cmpstr(xnames, ==, want);
  g_autofree char *jnames = isoinfo_names(iso, "-J");
  g_assert_cmpstr(jnames, ==, want);
  g_autofree char *rnames = isoinfo_names(iso, "-R");
  g_assert_cmpstr(rnames, ==, want);

  /* Volume id: lower case in the primary descriptor (isoinfo -d, xorriso -pvd_info). */
  const char *argv_d[] = {"isoinfo", "-d", "-i", iso, NULL};
  g_autofree char *info = run_text(argv_d);
  g_autofree char *volid = line_value(info, "Volume id:");
  g_assert_cmpstr(volid, ==, "cidata");
  g_assert_nonnull(strstr(info, "Joliet with UCS level 3 found"));
  g_assert_nonnull(strstr(info, "Rock Ridge signatures version 1 found"));
  g_autofree char *dev = g_strconcat("stdio:", iso, NULL);
  const char *argv_pvd[] = {"xorriso", "-indev", dev, "-pvd_info", NULL};
  g_autofree char *pvd = run_text(argv_pvd);
  g_autofree char *xvolid = line_value(pvd, "Volume Id    :");
  g_assert_cmpstr(xvolid, ==, "cidata");
  /* Fixed timestamps (see iso.c): the same inputs give the same bytes. */
  g_autofree char *ctime = line_value(pvd, "Creation Time:");
  g_assert_cmpstr(ctime, ==, "2000010100000000");

  /* blkid is what udev and cloud-init's fallback use to find LABEL=cidata. */
  g_autofree char *blkid = g_find_program_in_path("blkid");
  if (blkid) {
    const char *argv_b[] = {blkid, "-p", "-o", "value", "-s", "LABEL", iso, NULL};
    g_autofree char *label = run_text(argv_b);
    g_assert_cmpstr(g_strstrip(label), ==, "cidata");
  }

  /* Content byte for byte, through Joliet and Rock Ridge (isoinfo) and xorriso. */
  g_autofree char *out = g_build_filename(dir, "out", NULL);
  g_autofree char *dev_extract = g_strconcat("stdio:", iso, NULL);
  const char *argv_x[] = {"xorriso", "-osirrox", "on", "-indev", dev_extract,
                          "-extract", "/", out, NULL};
  g_bytes_unref(run_ok(argv_x));
  for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
    g_autofree char *path = g_strconcat("/", files[i].name, NULL);
    const char *trees[] = {"-J", "-R"};
    for (gsize t = 0; t < G_N_ELEMENTS(trees); t++) {
      const char *argv_get[] = {"isoinfo", trees[t], "-x", path, "-i", iso, NULL};
      g_autoptr(GBytes) got = run_ok(argv_get);
      assert_bytes_equal(got, files[i].data, files[i].len);
    }
    g_autofree char *extracted = g_build_filename(out, files[i].name, NULL);
    g_autoptr(GBytes) got = read_file(extracted);
    assert_bytes_equal(got, files[i].data, files[i].len);
  }
  rm_rf(dir);
}

static const char det_user_data[] = "#cloud-config\n";
static const VmletIsoFile det_files[] = {{"user-data", det_user_data, sizeof det_user_data - 1},
                                         {"meta-data", "a: b\n", 5}};

static const char *self_path;

static void test_iso_deterministic(void)
{
  const VmletIsoFile *files = det_files;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) first = NULL;
  g_assert_true(vmlet_iso_build("cidata", files, 2, &first, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(g_bytes_get_size(first) % 2048, ==, 0);

  /* Another process, a later second and a time zone that is not a whole hour off UTC
   * (setenv in this process is unsafe once libisofs has started threads). */
  g_autofree char *dir = make_tmpdir();
  g_autofree char *child_iso = g_build_filename(dir, "child.iso", NULL);
  g_usleep(1100 * 1000);
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_setenv(launcher, "TZ", "America/St_Johns", TRUE);
  g_autoptr(GSubprocess) child =
      g_subprocess_launcher_spawn(launcher, &error, self_path, "--write-det-iso", child_iso, NULL);
  g_assert_no_error(error);
  g_assert_true(g_subprocess_wait_check(child, NULL, &error));
  g_assert_no_error(error);
  g_autoptr(GBytes) second = read_file(child_iso);
  g_assert_true(g_bytes_equal(first, second));

  /* vmlet_iso_write stores exactly what vmlet_iso_build returns. */
  g_autofree char *iso = g_build_filename(dir, "seed.iso", NULL);
  g_assert_true(vmlet_iso_write(iso, "cidata", files, 2, &error));
  g_assert_no_error(error);
  g_autoptr(GBytes) on_disk = read_file(iso);
  g_assert_true(g_bytes_equal(first, on_disk));

  /* Different content, different bytes. */
  const char *ud = det_user_data;
  const VmletIsoFile other[] = {{"user-data", ud, strlen(ud)}, {"meta-data", "a: c\n", 5}};
  g_autoptr(GBytes) third = NULL;
  g_assert_true(vmlet_iso_build("cidata", other, 2, &third, &error));
  g_assert_false(g_bytes_equal(first, third));
  rm_rf(dir);
}

static gpointer build_many(gpointer data)
{
  GBytes *want = data;
  for (int i = 0; i < 25; i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) got = NULL;
    g_assert_true(vmlet_iso_build("cidata", det_files, G_N_ELEMENTS(det_files), &got, &error));
    g_assert_no_error(error);
    g_assert_true(g_bytes_equal(want, got));
  }
  return NULL;
}

/* The daemon may build seeds for several VMs at once; libisofs's global state is behind a
 * lock in iso.c, and the first call's lazy iso_init() races here too when run alone. */
static void test_iso_threads(void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) want = NULL;
  g_assert_true(vmlet_iso_build("cidata", det_files, G_N_ELEMENTS(det_files), &want, &error));
  GThread *threads[4];
  for (gsize i = 0; i < G_N_ELEMENTS(threads); i++)
    threads[i] = g_thread_new("build", build_many, want);
  for (gsize i = 0; i < G_N_ELEMENTS(threads); i++)
    g_thread_join(threads[i]);
}

static void test_iso_replace(void)
{
  g_autofree char *dir = make_tmpdir();
  g_autofree char *iso = g_build_filename(dir, "seed.iso", NULL);
  g_assert_true(g_file_set_contents(iso, "old", 3, NULL));
  g_assert_cmpint(chmod(iso, 0644), ==, 0);
  struct stat before;
  g_assert_cmpint(stat(iso, &before), ==, 0);

  const VmletIsoFile files[] = {{"user-data", "#cloud-config\n", 14}};
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_iso_write(iso, "cidata", files, 1, &error));
  g_assert_no_error(error);
  struct stat after;
  g_assert_cmpint(stat(iso, &after), ==, 0);
  g_assert_cmpint(after.st_mode & 07777, ==, 0600);
  g_assert_cmpuint(after.st_ino, !=, before.st_ino); /* replaced by rename, not rewritten */
  g_assert_cmpint(after.st_size % 2048, ==, 0);
  g_autofree char *listing = dir_listing(dir);
  g_assert_cmpstr(listing, ==, "seed.iso"); /* no temporary file left */

  /* A refused build leaves the old image and no temporary file. */
  g_autoptr(GBytes) good = read_file(iso);
  const VmletIsoFile bad[] = {{"user data", "x", 1}};
  g_assert_false(vmlet_iso_write(iso, "cidata", bad, 1, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_assert_true(g_str_has_prefix(error->message, iso));
  g_clear_error(&error);
  g_autoptr(GBytes) still = read_file(iso);
  g_assert_true(g_bytes_equal(good, still));
  g_autofree char *listing2 = dir_listing(dir);
  g_assert_cmpstr(listing2, ==, "seed.iso");

  /* A write that fails half-way (the file size limit stands in for a full disk; root
   * ignores permissions): the old image stays and the temporary file is removed. */
  g_autoptr(GSubprocess) child = g_subprocess_new(
      G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error, self_path, "--write-limited", iso, NULL);
  g_assert_no_error(error);
  g_autofree char *child_out = NULL;
  g_subprocess_communicate_utf8(child, NULL, NULL, &child_out, NULL, &error);
  g_assert_no_error(error);
  g_assert_true(g_subprocess_get_if_exited(child));
  g_assert_cmpint(g_subprocess_get_exit_status(child), ==, 3);
  g_assert_nonnull(strstr(child_out, "write failed: File too large"));
  g_autoptr(GBytes) after_child = read_file(iso);
  g_assert_true(g_bytes_equal(good, after_child));
  g_autofree char *listing_child = dir_listing(dir);
  g_assert_cmpstr(listing_child, ==, "seed.iso");

  /* A directory that does not exist. */
  g_autofree char *missing = g_build_filename(dir, "no-such-dir", "seed.iso", NULL);
  g_assert_false(vmlet_iso_write(missing, "cidata", files, 1, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
  g_assert_nonnull(strstr(error->message, "no-such-dir"));
  g_assert_nonnull(strstr(error->message, "cannot create a temporary file"));
  g_clear_error(&error);

  /* The rename fails when path is a non-empty directory: the temporary file is removed. */
  g_autofree char *sub = g_build_filename(dir, "sub", NULL);
  g_assert_cmpint(mkdir(sub, 0700), ==, 0);
  g_autofree char *inner = g_build_filename(sub, "keep", NULL);
  g_assert_true(g_file_set_contents(inner, "", 0, NULL));
  g_assert_false(vmlet_iso_write(sub, "cidata", files, 1, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_IO);
  g_assert_nonnull(strstr(error->message, "cannot rename"));
  g_clear_error(&error);
  g_autofree char *listing3 = dir_listing(dir);
  g_assert_cmpstr(listing3, ==, "seed.iso,sub");
  rm_rf(dir);
}

static void test_iso_bounds(void)
{
  static char big[VMLET_ISO_MAX_DATA_BYTES / 2 + 1];
  char long_name[VMLET_ISO_MAX_NAME_LEN + 2];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0'; /* 65 characters */
  const VmletIsoFile one[] = {{"user-data", "x", 1}};
  VmletIsoFile seventeen[VMLET_ISO_MAX_FILES + 1];
  char names[VMLET_ISO_MAX_FILES + 1][8];
  for (gsize i = 0; i < G_N_ELEMENTS(seventeen); i++) {
    g_snprintf(names[i], sizeof names[i], "f%02u", (unsigned)i);
    seventeen[i] = (VmletIsoFile){names[i], "x", 1};
  }
  const VmletIsoFile empty_name[] = {{"", "x", 1}};
  const VmletIsoFile too_long[] = {{long_name, "x", 1}};
  const VmletIsoFile slash[] = {{"a/b", "x", 1}};
  const VmletIsoFile space[] = {{"user data", "x", 1}};
  const VmletIsoFile dot[] = {{".", "x", 1}};
  const VmletIsoFile dotdot[] = {{"..", "x", 1}};
  const VmletIsoFile non_ascii[] = {{"d\xc3\xa9j\xc3\xa0", "x", 1}};
  const VmletIsoFile dup[] = {{"Unattend.xml", "x", 1}, {"unattend.XML", "y", 1}};
  const VmletIsoFile no_data[] = {{"user-data", NULL, 1}};
  const VmletIsoFile too_much[] = {{"a", big, sizeof big}, {"b", big, sizeof big}};

  enum { INVALID = VMLET_ERROR_INVALID, TOO_LARGE = VMLET_ERROR_TOO_LARGE };
  const struct {
    const VmletIsoFile *files;
    gsize n;
    const char *volume_id;
    int code;
    const char *message;
  } expect[] = {
      {one, 0, "cidata", INVALID, "ISO image has no files"},
      {seventeen, 17, "cidata", TOO_LARGE, "ISO image has 17 files, the limit is 16"},
      {empty_name, 1, "cidata", INVALID,
       "ISO file 0: name must be 1 to 64 characters, got an empty name"},
      {too_long, 1, "cidata", INVALID, "ISO file 0: name must be 1 to 64 characters"},
      {slash, 1, "cidata", INVALID,
       "ISO file name \"a/b\": only letters, digits, '.', '_' and '-' are allowed"},
      {space, 1, "cidata", INVALID, "ISO file name \"user data\": only letters"},
      {dot, 1, "cidata", INVALID, "ISO file name \".\" is reserved for directories"},
      {dotdot, 1, "cidata", INVALID, "ISO file name \"..\" is reserved for directories"},
      {non_ascii, 1, "cidata", INVALID,
       "ISO file name \"d\\303\\251j\\303\\240\": only letters"},
      {dup, 2, "cidata", INVALID,
       "ISO file names \"Unattend.xml\" and \"unattend.XML\" are the same ignoring case"},
      {no_data, 1, "cidata", INVALID, "ISO file user-data: no data"},
      {too_much, 2, "cidata", TOO_LARGE,
       "ISO file b: the files add up to more than 4194304 bytes"},
      {one, 1, "", INVALID, "ISO volume id must be 1 to 16 characters, got 0"},
      {one, 1, "abcdefghijklmnopq", INVALID,
       "ISO volume id must be 1 to 16 characters, got 17"},
      {one, 1, "ci data", INVALID,
       "ISO volume id \"ci data\": only letters, digits, '_' and '-' are allowed"},
      {one, 1, "ci.data", INVALID, "ISO volume id \"ci.data\": only"},
  };

  g_autofree char *dir = make_tmpdir();
  g_autofree char *iso = g_build_filename(dir, "seed.iso", NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(expect); i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) image = NULL;
    g_test_message("case %" G_GSIZE_FORMAT ": %s", i, expect[i].message);
    g_assert_false(
        vmlet_iso_build(expect[i].volume_id, expect[i].files, expect[i].n, &image, &error));
    g_assert_null(image); /* output untouched on failure */
    g_assert_error(error, VMLET_ERROR, expect[i].code);
    g_assert_true(g_str_has_prefix(error->message, expect[i].message));
    g_clear_error(&error);
    g_assert_false(
        vmlet_iso_write(iso, expect[i].volume_id, expect[i].files, expect[i].n, &error));
    g_assert_error(error, VMLET_ERROR, expect[i].code);
    g_assert_nonnull(strstr(error->message, expect[i].message));
    g_assert_false(g_file_test(iso, G_FILE_TEST_EXISTS));
  }
  g_autofree char *listing = dir_listing(dir);
  g_assert_cmpstr(listing, ==, "");

  /* Exactly at every bound is accepted: 16 files, a 64-character name, 4 MiB of data, a
   * 16-character volume id, and names that differ from "." and ".." only by more dots. */
  static char exact[VMLET_ISO_MAX_DATA_BYTES / 2];
  long_name[VMLET_ISO_MAX_NAME_LEN] = '\0';
  VmletIsoFile sixteen[VMLET_ISO_MAX_FILES];
  memcpy(sixteen, seventeen, sizeof sixteen);
  sixteen[0] = (VmletIsoFile){long_name, exact, sizeof exact};
  sixteen[1] = (VmletIsoFile){"...", exact, sizeof exact - 14};
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_iso_write(iso, "ABCDEFGHIJ-_0123", sixteen, G_N_ELEMENTS(sixteen), &error));
  g_assert_no_error(error);
  g_autoptr(GBytes) image = read_file(iso);
  g_assert_cmpuint(g_bytes_get_size(image), >, VMLET_ISO_MAX_DATA_BYTES);
  rm_rf(dir);
}

/* --- NoCloud ------------------------------------------------------------------------ */

static void test_instance_id(void)
{
  const char *ud = "#cloud-config\nfoo: 1\n";
  g_autofree char *a = vmlet_nocloud_instance_id("default", "vm-1", ud, strlen(ud));
  g_autofree char *b = vmlet_nocloud_instance_id("default", "vm-1", ud, strlen(ud));
  g_assert_cmpstr(a, ==, b);
  g_assert_true(g_str_has_prefix(a, "vm-1-"));
  g_assert_cmpuint(strlen(a), ==, strlen("vm-1-") + 16);
  for (const char *p = a + 5; *p; p++)
    g_assert_true(g_ascii_isxdigit(*p) && !g_ascii_isupper(*p));

  /* sha256("default/vm-1\0#cloud-config\nfoo: 1\n"), computed independently. */
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  static const char hashed[] = "default/vm-1\0#cloud-config\nfoo: 1\n";
  g_checksum_update(sum, (const guchar *)hashed, sizeof hashed - 1);
  g_assert_cmpmem(a + 5, 16, g_checksum_get_string(sum), 16);

  const char *ud2 = "#cloud-config\nfoo: 2\n";
  g_autofree char *c = vmlet_nocloud_instance_id("default", "vm-1", ud2, strlen(ud2));
  g_assert_cmpstr(a, !=, c);
  g_autofree char *d = vmlet_nocloud_instance_id("other", "vm-1", ud, strlen(ud));
  g_assert_cmpstr(a, !=, d);
  /* The NUL after the name keeps name and content apart. */
  g_autofree char *e = vmlet_nocloud_instance_id("default", "vm-1#", "cloud-config\nfoo: 1\n",
                                                 strlen(ud) - 1);
  g_assert_cmpstr(a + 5, !=, e + 6);
  g_autofree char *n1 = vmlet_nocloud_instance_id("default", "vm-1", NULL, 0);
  g_autofree char *n2 = vmlet_nocloud_instance_id("default", "vm-1", "", 0);
  g_assert_cmpstr(n1, ==, n2);
  g_assert_cmpstr(n1, !=, a);
}

/* The scalar values of a one-level YAML mapping, as libyaml reads them. */
static GHashTable *parse_flat_yaml(const char *text)
{
  GHashTable *map = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  yaml_parser_t parser;
  g_assert_true(yaml_parser_initialize(&parser));
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
  char *key = NULL;
  for (;;) {
    yaml_event_t ev;
    g_assert_true(yaml_parser_parse(&parser, &ev));
    if (ev.type == YAML_SCALAR_EVENT) {
      char *value = g_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
      /* A plain scalar that YAML 1.1 would resolve to a non-string is a failure here. */
      if (key) {
        g_assert_false(ev.data.scalar.plain_implicit &&
                       (g_ascii_isdigit(value[0]) || g_ascii_strcasecmp(value, "true") == 0 ||
                        g_ascii_strcasecmp(value, "null") == 0));
        g_hash_table_insert(map, key, value);
        key = NULL;
      } else {
        key = value;
      }
    }
    gboolean end = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
    if (end)
      break;
  }
  yaml_parser_delete(&parser);
  g_assert_null(key);
  return map;
}

static void test_meta_data(void)
{
  g_autofree char *plain = vmlet_nocloud_meta_data("vm-1-0123456789abcdef", "vm-1");
  g_assert_cmpstr(plain, ==, "instance-id: vm-1-0123456789abcdef\nlocal-hostname: vm-1\n");

  static const struct {
    const char *value;
    const char *written;
  } cases[] = {
      {"123", "\"123\""},
      {"1e3", "\"1e3\""},
      {"true", "\"true\""},
      {"No", "\"No\""},
      {"null", "\"null\""},
      {"-vm", "\"-vm\""},
      {"vm: 1", "\"vm: 1\""},
      {"a\"b\\c", "\"a\\\"b\\\\c\""},
      {"line\nbreak", "\"line\\x0abreak\""},
      {"caf\xc3\xa9\xe2\x80\xa8", "\"caf\\u00e9\\u2028\""},
      {"bad\xff", "\"bad\\xff\""},
      {"", "\"\""},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *text = vmlet_nocloud_meta_data(cases[i].value, "host");
    g_autofree char *want = g_strdup_printf("instance-id: %s\nlocal-hostname: host\n",
                                            cases[i].written);
    g_assert_cmpstr(text, ==, want);
    if (g_utf8_validate(cases[i].value, -1, NULL)) {
      g_autoptr(GHashTable) map = parse_flat_yaml(text);
      g_assert_cmpstr(g_hash_table_lookup(map, "instance-id"), ==, cases[i].value);
      g_assert_cmpstr(g_hash_table_lookup(map, "local-hostname"), ==, "host");
    }
  }
}

static void test_nocloud_write(void)
{
  const char *const tools[] = {"isoinfo", NULL};
  if (!need_tools(tools))
    return;
  g_autofree char *dir = make_tmpdir();
  g_autofree char *iso = g_build_filename(dir, "cidata.iso", NULL);
  g_autofree char *ud = cloud_config_of_len(2048);
  g_autoptr(GError) error = NULL;

  g_assert_true(vmlet_nocloud_write(iso, "default", "vm-1", ud, 2048, NULL, &error));
  g_assert_no_error(error);
  g_autofree char *names = isoinfo_names(iso, "-J");
  g_assert_cmpstr(names, ==, "/meta-data,/user-data");
  const char *argv_d[] = {"isoinfo", "-d", "-i", iso, NULL};
  g_autofree char *info = run_text(argv_d);
  g_autofree char *volid = line_value(info, "Volume id:");
  g_assert_cmpstr(volid, ==, "cidata");
  const char *argv_ud[] = {"isoinfo", "-J", "-x", "/user-data", "-i", iso, NULL};
  g_autoptr(GBytes) got_ud = run_ok(argv_ud);
  assert_bytes_equal(got_ud, ud, 2048);
  g_autofree char *id = vmlet_nocloud_instance_id("default", "vm-1", ud, 2048);
  g_autofree char *meta = vmlet_nocloud_meta_data(id, "vm-1");
  const char *argv_md[] = {"isoinfo", "-J", "-x", "/meta-data", "-i", iso, NULL};
  g_autoptr(GBytes) got_md = run_ok(argv_md);
  assert_bytes_equal(got_md, meta, strlen(meta));
  struct stat st;
  g_assert_cmpint(stat(iso, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 07777, ==, 0600);

  /* With a network config: three files, and an instance-id that covers it. */
  const char *net = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";
  g_assert_true(vmlet_nocloud_write(iso, "default", "vm-1", ud, 2048, net, &error));
  g_assert_no_error(error);
  g_autofree char *names3 = isoinfo_names(iso, "-J");
  g_assert_cmpstr(names3, ==, "/meta-data,/network-config,/user-data");
  const char *argv_nc[] = {"isoinfo", "-J", "-x", "/network-config", "-i", iso, NULL};
  g_autoptr(GBytes) got_nc = run_ok(argv_nc);
  assert_bytes_equal(got_nc, net, strlen(net));
  g_autoptr(GBytes) got_md2 = run_ok(argv_md);
  gsize md2_len = 0;
  const char *md2 = g_bytes_get_data(got_md2, &md2_len);
  g_autofree char *md2_text = g_strndup(md2, md2_len);
  g_assert_true(g_str_has_prefix(md2_text, "instance-id: vm-1-"));
  g_assert_null(strstr(md2_text, id)); /* the network config changed the instance-id */

  /* Empty user data is still a valid seed. */
  g_assert_true(vmlet_nocloud_write(iso, "default", "vm-1", NULL, 0, NULL, &error));
  g_assert_no_error(error);
  g_autoptr(GBytes) got_empty = run_ok(argv_ud);
  g_assert_cmpuint(g_bytes_get_size(got_empty), ==, 0);
  g_assert_false(vmlet_nocloud_write(iso, "default", "vm-1", NULL, 5, NULL, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_assert_nonnull(strstr(error->message, "ISO file user-data: no data"));
  g_clear_error(&error);
  g_autofree char *listing = dir_listing(dir);
  g_assert_cmpstr(listing, ==, "cidata.iso");
  rm_rf(dir);
}

/* --- Sysprep ------------------------------------------------------------------------ */

static gboolean sysprep(const char *path, const char *const *keys, GError **error)
{
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GPtrArray) blobs = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
  for (gsize i = 0; keys[i]; i++) {
    g_ptr_array_add(names, g_strdup(keys[i]));
    g_autofree char *xml = g_strdup_printf("<unattend key=\"%s\"/>\r\n", keys[i]);
    g_ptr_array_add(blobs, g_bytes_new(xml, strlen(xml)));
  }
  return vmlet_sysprep_write(path, names, blobs, error);
}

static void test_sysprep(void)
{
  const char *const tools[] = {"isoinfo", NULL};
  if (!need_tools(tools))
    return;
  g_autofree char *dir = make_tmpdir();
  g_autofree char *iso = g_build_filename(dir, "sysprep.iso", NULL);
  g_autoptr(GError) error = NULL;

  const char *const one[] = {"Unattend.XML", NULL};
  g_assert_true(sysprep(iso, one, &error));
  g_assert_no_error(error);
  g_autofree char *names = isoinfo_names(iso, "-J");
  g_assert_cmpstr(names, ==, "/unattend.xml");
  const char *argv_x[] = {"isoinfo", "-J", "-x", "/unattend.xml", "-i", iso, NULL};
  g_autoptr(GBytes) got = run_ok(argv_x);
  const char *want = "<unattend key=\"Unattend.XML\"/>\r\n";
  assert_bytes_equal(got, want, strlen(want));
  const char *argv_d[] = {"isoinfo", "-d", "-i", iso, NULL};
  g_autofree char *info = run_text(argv_d);
  g_autofree char *volid = line_value(info, "Volume id:");
  g_assert_cmpstr(volid, ==, "unattendCD");
  struct stat st;
  g_assert_cmpint(stat(iso, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 07777, ==, 0600);

  const char *const both[] = {"AutoUnattend.xml", "unattend.xml", NULL};
  g_assert_true(sysprep(iso, both, &error));
  g_assert_no_error(error);
  g_autofree char *names2 = isoinfo_names(iso, "-J");
  g_assert_cmpstr(names2, ==, "/autounattend.xml,/unattend.xml");

  static const struct {
    const char *keys[4];
    const char *message;
  } bad[] = {
      {{"setup.xml", NULL},
       "Sysprep key \"setup.xml\": expected autounattend.xml or unattend.xml"},
      {{"unattend.xml", "setup.xml", NULL}, "Sysprep key \"setup.xml\""},
      {{"unattend.xml", "UNATTEND.xml", NULL},
       "Sysprep key \"UNATTEND.xml\": unattend.xml is given twice"},
      {{"unattend.xml\n", NULL}, "Sysprep key \"unattend.xml\\n\""},
      {{NULL}, "Sysprep: no autounattend.xml or unattend.xml"},
  };
  g_autoptr(GBytes) before = read_file(iso);
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_assert_false(sysprep(iso, bad[i].keys, &error));
    g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, bad[i].message));
    g_clear_error(&error);
  }
  g_autoptr(GBytes) after = read_file(iso);
  g_assert_true(g_bytes_equal(before, after));

  /* Keys and values must pair up. */
  g_autoptr(GPtrArray) names3 = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GPtrArray) blobs3 = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
  g_ptr_array_add(names3, g_strdup("unattend.xml"));
  g_assert_false(vmlet_sysprep_write(iso, names3, blobs3, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_assert_nonnull(strstr(error->message, "1 keys but 0 values"));
  g_clear_error(&error);

  /* A very long key is shown cut short. */
  g_autofree char *long_key = g_strnfill(300, 'k');
  const char *const long_keys[] = {long_key, NULL};
  g_assert_false(sysprep(iso, long_keys, &error));
  g_assert_nonnull(strstr(error->message, "kkk...\""));
  g_assert_cmpuint(strlen(error->message), <, 200);
  g_clear_error(&error);
  rm_rf(dir);
}

/* --- user-data check ---------------------------------------------------------------- */

static GPtrArray *check(const char *text, gsize len)
{
  GPtrArray *w = g_ptr_array_new_with_free_func(g_free);
  vmlet_user_data_check(text, len, w);
  for (guint i = 0; i < w->len; i++)
    g_test_message("warning: %s", (const char *)w->pdata[i]);
  return w;
}

static void test_user_data_check(void)
{
  /* The seed VM's user data (tests/golden/seed-linux-vm.json) is valid. */
  const char *seed =
      "#cloud-config\npackage_update: true\npackages:\n  - nginx\n  - qemu-guest-agent\n"
      "run_cmd:\n  - systemctl daemon-reload\n  - systemctl enable --now nginx.service\n"
      "ssh_pwauth: True\nusers:\n- name: cloud\n  passwd: '$6$rounds=4096$salt'\n"
      "  shell: /bin/bash\n  sudo: ALL=(ALL) NOPASSWD:ALL\n  lock_passwd: False\n"
      "final_message: \"The system is finally up, after $UPTIME seconds\"\n";
  g_autoptr(GPtrArray) w0 = check(seed, strlen(seed));
  g_assert_cmpuint(w0->len, ==, 0);

  const char *bad = "#cloud-config\nfoo: [1, 2\n";
  g_autoptr(GPtrArray) w1 = check(bad, strlen(bad));
  g_assert_cmpuint(w1->len, ==, 1);
  /* The flow sequence opened on line 2 is still open at the end: line 3, column 1. */
  g_assert_true(g_str_has_prefix(w1->pdata[0],
                                 "user-data: #cloud-config is not valid YAML: did not find "
                                 "expected ',' or ']' at line 3, column 1"));
  g_assert_nonnull(strstr(w1->pdata[0], "while parsing a flow sequence at line 2, column 6"));

  const char *tab = "#cloud-config\nruncmd:\n\t- ls\n";
  g_autoptr(GPtrArray) w2 = check(tab, strlen(tab));
  g_assert_cmpuint(w2->len, ==, 1);
  g_assert_nonnull(strstr(w2->pdata[0], "cannot start any token at line 3, column 1"));

  const char *badkey = "#cloud-config\nusers:\n  - name: a\n   shell: b\n";
  g_autoptr(GPtrArray) w3 = check(badkey, strlen(badkey));
  g_assert_cmpuint(w3->len, ==, 1);
  g_assert_nonnull(strstr(w3->pdata[0], "at line 4, column"));

  /* Invalid UTF-8 is a reader error with a byte offset. */
  const char *latin1 = "#cloud-config\nfoo: caf\xe9\n";
  g_autoptr(GPtrArray) w4 = check(latin1, strlen(latin1));
  g_assert_cmpuint(w4->len, ==, 1);
  g_assert_nonnull(strstr(w4->pdata[0], "at byte 22"));

  /* cloud-init lower-cases and strips leading whitespace before matching. */
  const char *upper = "\n  #Cloud-Config\nfoo: [\n";
  g_autoptr(GPtrArray) w5 = check(upper, strlen(upper));
  g_assert_cmpuint(w5->len, ==, 1);

  /* Not #cloud-config: not checked, however broken. */
  static const char *const unchecked[] = {
      "#!/bin/sh\nfoo: [1, 2\n",
      "#include\nhttps://example.com/a: [\n",
      "Content-Type: multipart/mixed; boundary=\"x\"\nMIME-Version: 1.0\n\n--x\nfoo: [\n",
      "## template: jinja\n#cloud-config\nfoo: [1, 2\n",
      "#cloud-config-archive\n- [\n",
      "#cloud-configX\nfoo: [\n",
      "#cloud-boothook\nfoo: [\n",
      "",
  };
  for (gsize i = 0; i < G_N_ELEMENTS(unchecked); i++) {
    g_autoptr(GPtrArray) w = check(unchecked[i], strlen(unchecked[i]));
    g_assert_cmpuint(w->len, ==, 0);
  }
  g_autoptr(GPtrArray) wnull = check(NULL, 0);
  g_assert_cmpuint(wnull->len, ==, 0);

  /* Length, not NUL, ends the document: a NUL inside is a YAML error. */
  const char nul[] = "#cloud-config\na: 1\n\0b: [\n";
  g_autoptr(GPtrArray) w6 = check(nul, sizeof nul - 1);
  g_assert_cmpuint(w6->len, ==, 1);
  g_autoptr(GPtrArray) w7 = check(nul, strlen(nul));
  g_assert_cmpuint(w7->len, ==, 0);

  /* At most 1 MiB is parsed; above that one warning says it was not checked. */
  gsize big_len = VMLET_USER_DATA_CHECK_MAX_BYTES + 1;
  g_autofree char *big = g_malloc(big_len);
  memset(big, '[', big_len); /* would be a YAML error if it were parsed */
  memcpy(big, "#cloud-config\n", 14);
  g_autoptr(GPtrArray) w8 = check(big, big_len);
  g_assert_cmpuint(w8->len, ==, 1);
  g_assert_nonnull(strstr(w8->pdata[0], "was not checked"));
  /* Exactly 1 MiB is parsed. Deep nesting stops the check early: libyaml's scanner is
   * quadratic in the flow depth, and 1 MiB of "[" would otherwise take minutes. */
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(GPtrArray) w9 = check(big, big_len - 1);
  g_assert_cmpint(g_get_monotonic_time() - t0, <, 5 * G_USEC_PER_SEC);
  g_assert_cmpuint(w9->len, ==, 1);
  g_assert_cmpstr(w9->pdata[0], ==,
                  "user-data: #cloud-config nests deeper than 64 levels at line 2, column 65; "
                  "the rest was not checked");
  GString *nest = g_string_new("#cloud-config\n");
  for (int i = 0; i < 64; i++)
    g_string_append(nest, "- ");
  g_string_append(nest, "x\n");
  g_autoptr(GPtrArray) w10 = check(nest->str, nest->len);
  g_assert_cmpuint(w10->len, ==, 0); /* 64 levels: checked, valid */
  g_string_insert(nest, 14, "- ");
  g_autoptr(GPtrArray) w11 = check(nest->str, nest->len);
  g_assert_cmpuint(w11->len, ==, 1);
  g_assert_nonnull(strstr(w11->pdata[0], "nests deeper than 64 levels at line 2, column 129"));
  g_string_free(nest, TRUE);

  /* Warnings are appended to what the caller already has. */
  g_autoptr(GPtrArray) w = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(w, g_strdup("earlier"));
  vmlet_user_data_check(bad, strlen(bad), w);
  g_assert_cmpuint(w->len, ==, 2);
  g_assert_cmpstr(w->pdata[0], ==, "earlier");
}

int main(int argc, char **argv)
{
  /* Child mode for /iso/deterministic: build the same image in a fresh process. */
  if (argc == 3 && g_str_equal(argv[1], "--write-det-iso")) {
    g_autoptr(GError) error = NULL;
    if (!vmlet_iso_write(argv[2], "cidata", det_files, G_N_ELEMENTS(det_files), &error)) {
      g_printerr("%s\n", error->message);
      return 1;
    }
    return 0;
  }
  /* Child mode for /iso/replace: a write that fails with EFBIG after the first blocks. */
  if (argc == 3 && g_str_equal(argv[1], "--write-limited")) {
    static char big[64 * 1024];
    const VmletIsoFile files[] = {{"user-data", big, sizeof big}};
    g_autoptr(GError) error = NULL;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {.rlim_cur = 40000, .rlim_max = 40000};
    if (setrlimit(RLIMIT_FSIZE, &limit) < 0)
      return 1;
    if (vmlet_iso_write(argv[2], "cidata", files, 1, &error))
      return 2;
    g_print("%s\n", error->message);
    return 3;
  }
  self_path = argv[0];
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/iso/readback", test_iso_readback);
  g_test_add_func("/iso/deterministic", test_iso_deterministic);
  g_test_add_func("/iso/threads", test_iso_threads);
  g_test_add_func("/iso/replace", test_iso_replace);
  g_test_add_func("/iso/bounds", test_iso_bounds);
  g_test_add_func("/nocloud/instance-id", test_instance_id);
  g_test_add_func("/nocloud/meta-data", test_meta_data);
  g_test_add_func("/nocloud/write", test_nocloud_write);
  g_test_add_func("/sysprep/write", test_sysprep);
  g_test_add_func("/user-data/check", test_user_data_check);
  return g_test_run();
}
