#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "jsonval.h"
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
    g_assert_cmpint(vmlet_secret_check_file(path, &error), ==, cases[i].ok);
    if (!cases[i].ok) {
      g_autofree char *want = g_strdup_printf("%s: mode %04o lets others read a Secret; expected "
                                              "0600 or 0400 (chmod 600)", path, cases[i].mode);
      g_assert_cmpstr(error->message, ==, want);
    }
  }
  g_unlink(path);
  g_rmdir(dir);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/secret/parse", test_parse);
  g_test_add_func("/secret/bad-base64-never-quoted", test_bad_base64_never_quoted);
  g_test_add_func("/secret/file-modes", test_file_modes);
  return g_test_run();
}
