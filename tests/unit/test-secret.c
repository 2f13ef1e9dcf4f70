#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "jsonval.h"
#include "objects.h"
#include "secret.h"
#include "vmlet-error.h"

static VmletSecret *parse(const char *text, VmletDiag **out)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) root = vmlet_json_parse("s.json", text, -1, &error);
  g_assert_no_error(error);
  *out = vmlet_diag_new("s.json");
  return vmlet_secret_parse(json_node_get_object(root), *out);
}

static void test_parse(void)
{
  g_autoptr(VmletDiag) d = NULL;
  /* "#cloud-config\n" in base64, and a stringData key that wins over data. */
  g_autoptr(VmletSecret) s = parse(
      "{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"ci\"}, "
      "\"type\": \"provisioning.virtualization.deckhouse.io/cloud-init\", \"data\": "
      "{\"userData\": \"I2Nsb3VkLWNvbmZpZwo=\", \"other\": \"eA==\"}, \"stringData\": "
      "{\"other\": \"plain\"}}", &d);
  g_assert_nonnull(s);
  g_assert_cmpstr(s->type, ==, "provisioning.virtualization.deckhouse.io/cloud-init");
  gsize len = 0;
  const char *ud = g_bytes_get_data(g_hash_table_lookup(s->data, "userData"), &len);
  g_assert_cmpmem(ud, len, "#cloud-config\n", 14);
  const char *other = g_bytes_get_data(g_hash_table_lookup(s->data, "other"), &len);
  g_assert_cmpmem(other, len, "plain", 5);
}

static void test_bad_base64_never_quoted(void)
{
  g_autoptr(VmletDiag) d = NULL;
  g_autoptr(VmletSecret) s = parse(
      "{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"ci\"}, "
      "\"type\": \"t\", \"data\": {\"userData\": \"c2VjcmV0LXBhc3N3b3Jk!!\"}}", &d);
  g_assert_null(s);
  g_assert_cmpuint(d->errors->len, ==, 1);
  const char *msg = d->errors->pdata[0];
  g_assert_cmpstr(msg, ==, "data.userData: expected base64 (RFC 4648, padded), found invalid "
                           "base64");
  g_assert_null(strstr(msg, "c2VjcmV0")); /* the value is never echoed */
}

static gboolean check(const char *path, GError **error)
{
  struct stat st;
  g_assert_cmpint(stat(path, &st), ==, 0);
  return vmlet_secret_check_stat(path, &st, error);
}

static void test_file_modes(void)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-secret-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "s.json", NULL);
  g_assert_true(g_file_set_contents(path, "{}", -1, NULL));
  static const struct {
    mode_t mode;
    gboolean ok;
  } cases[] = {{0600, TRUE}, {0400, TRUE}, {0644, FALSE}, {0640, FALSE}, {0604, FALSE}};
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_assert_cmpint(chmod(path, cases[i].mode), ==, 0);
    g_autoptr(GError) error = NULL;
    g_assert_cmpint(check(path, &error), ==, cases[i].ok);
    if (!cases[i].ok) {
      g_autofree char *want = g_strdup_printf("%s: mode %04o lets others read a Secret; expected "
                                              "0600 or 0400 (chmod 600)", path, cases[i].mode);
      g_assert_cmpstr(error->message, ==, want);
    }
  }
  g_unlink(path);
  g_rmdir(dir);
}

/* Owned by someone else than root or this process: refused even when private. The stat is
 * what the loader took from the descriptor, so any owner can be tried without root. */
static void test_file_owner(void)
{
  struct stat st = {.st_mode = S_IFREG | 0600, .st_uid = 4242};
  g_autoptr(GError) error = NULL;
  g_assert_false(vmlet_secret_check_stat("x.json", &st, &error));
  g_assert_cmpstr(error->message, ==, "x.json: owned by uid 4242; expected root or vmletd's "
                                      "user to own a Secret (chown)");
  st.st_uid = 0;
  g_assert_true(vmlet_secret_check_stat("x.json", &st, NULL));
  st.st_uid = geteuid();
  g_assert_true(vmlet_secret_check_stat("x.json", &st, NULL));
}

/* A Secret is accepted only from a private file wherever it is found: in a List (as in
 * vms.d) readable by others it is refused with the mode, before its data are looked at, so
 * bad base64 in it is not what is reported. */
static void test_secret_in_open_list_refused(void)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-secret-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "vm.json", NULL);
  g_assert_true(g_file_set_contents(
      path,
      "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{\"apiVersion\": \"v1\", "
      "\"kind\": \"Secret\", \"metadata\": {\"name\": \"ci\"}, \"type\": \"t\", "
      "\"data\": {\"userData\": \"not base64!\"}}]}",
      -1, NULL));
  g_assert_cmpint(chmod(path, 0644), ==, 0);
  g_autofree char *mode_msg = g_strdup_printf("%s: mode 0644 lets others read a Secret; "
                                              "expected 0600 or 0400 (chmod 600)", path);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_load_file(path, FALSE, NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(objs->len, ==, 1);
  VmletObject *o = objs->pdata[0];
  g_assert_cmpint(o->kind, ==, VMLET_KIND_SECRET);
  g_assert_cmpstr(o->secret->refused, ==, mode_msg);
  g_assert_cmpuint(g_hash_table_size(o->secret->data), ==, 0);

  g_autoptr(VmletInventory) inv = vmlet_inventory_new();
  vmlet_inventory_add(inv, o);
  g_autofree char *why = NULL;
  g_assert_null(vmlet_inventory_secret(inv, "default", "ci", &why));
  g_autofree char *want = g_strdup_printf("Secret \"ci\" was refused: %s", mode_msg);
  g_assert_cmpstr(why, ==, want);

  /* Private, the same file is read, and its bad base64 is the problem. */
  g_assert_cmpint(chmod(path, 0600), ==, 0);
  g_clear_pointer(&objs, g_ptr_array_unref);
  objs = vmlet_objects_load_file(path, FALSE, NULL, &error);
  g_assert_null(objs);
  g_assert_nonnull(strstr(error->message, "items[0]: data.userData: expected base64"));
  g_clear_error(&error);

  /* Not even JSON and open to others: in secrets.d the mode is said first; elsewhere (a
   * broken VM drop-in, say) only the parse problem. */
  g_assert_true(g_file_set_contents(path, "{\"kind\": ", -1, NULL));
  g_assert_cmpint(chmod(path, 0604), ==, 0);
  objs = vmlet_objects_load_file(path, TRUE, NULL, &error);
  g_assert_null(objs);
  g_autofree char *first = g_strdup_printf("%s: mode 0604 lets others read a Secret", path);
  g_assert_true(g_str_has_prefix(error->message, first));
  g_clear_error(&error);
  objs = vmlet_objects_load_file(path, FALSE, NULL, &error);
  g_assert_null(objs);
  g_assert_null(strstr(error->message, "mode 0604"));
  g_unlink(path);
  g_rmdir(dir);
}

/* In secrets.d a file that cannot be read at all is a refused Secret named after the file. */
static void test_secrets_dir_unreadable_file(void)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-secret-XXXXXX", NULL);
  g_autofree char *sdir = g_build_filename(dir, "secrets.d", NULL);
  g_assert_cmpint(g_mkdir(sdir, 0700), ==, 0);
  g_autofree char *path = g_build_filename(sdir, "gone.json", NULL);
  /* A dangling symlink: open fails whoever runs the test (root reads any mode). */
  g_assert_cmpint(symlink("/nonexistent/vmlet-secret", path), ==, 0);
  g_autoptr(VmletInventory) inv = vmlet_inventory_new();
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  vmlet_inventory_load_dir(inv, sdir, problems, NULL);
  g_assert_cmpuint(problems->len, ==, 1);
  g_autofree char *why = NULL;
  g_assert_null(vmlet_inventory_secret(inv, "default", "gone", &why));
  g_autofree char *want = g_strdup_printf("Secret \"gone\" was refused: %s: cannot open: No "
                                          "such file or directory", path);
  g_assert_cmpstr(why, ==, want);
  g_unlink(path);
  g_rmdir(sdir);
  g_rmdir(dir);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/secret/parse", test_parse);
  g_test_add_func("/secret/bad-base64-never-quoted", test_bad_base64_never_quoted);
  g_test_add_func("/secret/file-modes", test_file_modes);
  g_test_add_func("/secret/file-owner", test_file_owner);
  g_test_add_func("/secret/open-list-refused", test_secret_in_open_list_refused);
  g_test_add_func("/secret/secrets-dir-unreadable", test_secrets_dir_unreadable_file);
  return g_test_run();
}
