#include <string.h>

#include "jsonval.h"
#include "objects.h"
#include "yamljson.h"

static JsonObject *convert(const char *yaml, JsonNode **keep)
{
  g_autoptr(GError) error = NULL;
  gsize len = 0;
  g_autofree char *json = vmlet_yaml_to_json("t.yaml", yaml, strlen(yaml), &len, &error);
  g_assert_no_error(error);
  *keep = vmlet_json_parse("t.json", json, (gssize)len, &error);
  g_assert_no_error(error);
  return json_node_get_object(*keep);
}

static void assert_refused(const char *yaml, const char *message)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *json = vmlet_yaml_to_json("t.yaml", yaml, strlen(yaml), NULL, &error);
  g_assert_null(json);
  g_test_message("%s", error->message);
  g_assert_cmpstr(error->message, ==, message);
}

static void test_scalars(void)
{
  g_autoptr(JsonNode) root = NULL;
  JsonObject *o = convert("a: 1\nb: -7\nc: 1.5\nd: true\ne: False\nf: ~\ng: null\n"
                          "h: \"1\"\ni: 10%\nj: 1Gi\nk: 'true'\nl: |\n  x\n  y\nm: []\n"
                          "n: {p: q}\n", &root);
  g_assert_cmpint(json_object_get_int_member(o, "a"), ==, 1);
  g_assert_cmpint(json_object_get_int_member(o, "b"), ==, -7);
  g_assert_cmpfloat(json_object_get_double_member(o, "c"), ==, 1.5);
  g_assert_true(json_object_get_boolean_member(o, "d"));
  g_assert_false(json_object_get_boolean_member(o, "e"));
  g_assert_true(json_object_get_null_member(o, "f"));
  g_assert_true(json_object_get_null_member(o, "g"));
  g_assert_cmpstr(json_object_get_string_member(o, "h"), ==, "1");
  g_assert_cmpstr(json_object_get_string_member(o, "i"), ==, "10%");
  g_assert_cmpstr(json_object_get_string_member(o, "j"), ==, "1Gi");
  g_assert_cmpstr(json_object_get_string_member(o, "k"), ==, "true");
  g_assert_cmpstr(json_object_get_string_member(o, "l"), ==, "x\ny\n");
  g_assert_cmpuint(json_array_get_length(json_object_get_array_member(o, "m")), ==, 0);
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(o, "n"), "p"), ==,
                  "q");
}

/* The DVP guide's first example, as printed, gives the same VM as its JSON golden. */
static void test_seed_example(void)
{
  const char *dir = g_getenv("VMLET_GOLDEN_DIR");
  g_autofree char *yaml_path = g_build_filename(dir, "..", "seed", "linux-vm.yaml", NULL);
  g_autofree char *json_path = g_build_filename(dir, "seed-linux-vm.json", NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *yaml_json = NULL, *json = NULL;
  gsize ylen = 0, jlen = 0;
  g_assert_true(vmlet_read_manifest(yaml_path, &yaml_json, &ylen, &error));
  g_assert_true(vmlet_read_manifest(json_path, &json, &jlen, &error));
  g_autoptr(GPtrArray) a = vmlet_objects_parse("yaml", yaml_json, ylen, NULL, &error);
  g_assert_no_error(error);
  g_autoptr(GPtrArray) b = vmlet_objects_parse("json", json, jlen, NULL, &error);
  g_assert_no_error(error);
  VmSpec *x = ((VmletObject *)a->pdata[0])->vm, *y = ((VmletObject *)b->pdata[0])->vm;
  g_assert_cmpstr(x->user_data, ==, y->user_data);
  g_assert_true(json_node_equal(x->spec_json, y->spec_json));
  g_assert_cmpuint(x->cores, ==, 1);
  g_assert_cmpuint(x->core_fraction, ==, 10);
}

static void test_documents(void)
{
  g_autoptr(JsonNode) root = NULL;
  JsonObject *o = convert("kind: A\n---\nkind: B\n", &root);
  g_assert_cmpstr(json_object_get_string_member(o, "kind"), ==, "List");
  JsonArray *items = json_object_get_array_member(o, "items");
  g_assert_cmpuint(json_array_get_length(items), ==, 2);
  g_assert_cmpstr(json_object_get_string_member(json_array_get_object_element(items, 1), "kind"),
                  ==, "B");
}

static void test_refusals(void)
{
  assert_refused("a: &x 1\nb: *x\n", "t.yaml:1:4: anchors are not supported");
  assert_refused("a: [1, 2\nb: 3\n",
                 "t.yaml:2:2: did not find expected ',' or ']'");
  assert_refused("? [a]\n: 1\n", "t.yaml:1:3: only scalar mapping keys are supported");
  GString *deep = g_string_new(NULL);
  for (int i = 0; i < 40; i++)
    g_string_append(deep, "[");
  g_autoptr(GError) error = NULL;
  g_autofree char *json = vmlet_yaml_to_json("t.yaml", deep->str, deep->len, NULL, &error);
  g_assert_null(json);
  g_assert_nonnull(strstr(error->message, "nested deeper than 32 levels"));
  g_string_free(deep, TRUE);
  /* "Billion laughs" needs aliases, which are refused at the first anchor. */
  assert_refused("a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a]\n", "t.yaml:1:4: anchors are not supported");
}

static void test_detection(void)
{
  g_assert_false(vmlet_looks_like_yaml("  {\"a\": 1}", 10));
  g_assert_false(vmlet_looks_like_yaml("\n[1]", 4));
  g_assert_true(vmlet_looks_like_yaml("# comment\na: 1", 14));
  g_assert_true(vmlet_looks_like_yaml("apiVersion: v1", 14));
  g_assert_false(vmlet_looks_like_yaml("   ", 3));
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/yaml/scalars", test_scalars);
  g_test_add_func("/yaml/seed-example", test_seed_example);
  g_test_add_func("/yaml/documents", test_documents);
  g_test_add_func("/yaml/refusals", test_refusals);
  g_test_add_func("/yaml/detection", test_detection);
  return g_test_run();
}
