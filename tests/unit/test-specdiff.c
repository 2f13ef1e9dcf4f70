#include "specdiff.h"

static JsonNode *j(const char *text)
{
  g_autoptr(GError) error = NULL;
  JsonNode *n = json_from_string(text, &error);
  g_assert_no_error(error);
  return n;
}

static void assert_diff(const char *cur, const char *want, const char *expected)
{
  g_autoptr(JsonNode) a = j(cur), b = j(want), e = j(expected);
  g_autoptr(JsonArray) d = vmlet_spec_diff(a, b);
  g_autoptr(JsonNode) got = json_node_init_array(json_node_alloc(), d);
  g_autofree char *text = json_to_string(got, FALSE);
  g_test_message("%s", text);
  g_assert_true(json_node_equal(got, e));
}

static void test_diff(void)
{
  /* The guide's example, exactly. */
  assert_diff("{\"cpu\": {\"cores\": 1, \"coreFraction\": \"10%\"}}",
              "{\"cpu\": {\"cores\": 2, \"coreFraction\": \"10%\"}}",
              "[{\"currentValue\": 1, \"desiredValue\": 2, \"operation\": \"replace\", "
              "\"path\": \"cpu.cores\"}]");
  /* Applied at once: never listed. */
  assert_diff("{\"runPolicy\": \"Manual\", \"disruptions\": {\"restartApprovalMode\": \"Manual\"}}",
              "{\"runPolicy\": \"AlwaysOn\", \"disruptions\": {\"restartApprovalMode\": "
              "\"Automatic\"}}",
              "[]");
  /* Lists change as a whole (order is boot order); add and remove; null means absent. */
  assert_diff("{\"blockDeviceRefs\": [{\"kind\": \"VirtualDisk\", \"name\": \"a\"}], "
              "\"nodeSelector\": {\"x\": \"1\"}, \"osType\": null}",
              "{\"blockDeviceRefs\": [{\"kind\": \"VirtualDisk\", \"name\": \"b\"}], "
              "\"virtualMachineIPAddressName\": \"ip\"}",
              "[{\"currentValue\": [{\"kind\": \"VirtualDisk\", \"name\": \"a\"}], "
              "\"desiredValue\": [{\"kind\": \"VirtualDisk\", \"name\": \"b\"}], "
              "\"operation\": \"replace\", \"path\": \"blockDeviceRefs\"}, "
              "{\"currentValue\": {\"x\": \"1\"}, \"operation\": \"remove\", "
              "\"path\": \"nodeSelector\"}, "
              "{\"desiredValue\": \"ip\", \"operation\": \"add\", "
              "\"path\": \"virtualMachineIPAddressName\"}]");
  assert_diff("{\"a\": 1}", "{\"a\": 1}", "[]");
}

/* RFC 7386, appendix A. */
static void test_merge_patch(void)
{
  static const char *const cases[][3] = {
      {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
      {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
      {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
      {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
      {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
      {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
      {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
      {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
      {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
      {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
      {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
      {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
      {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(JsonNode) target = j(cases[i][0]), patch = j(cases[i][1]), want = j(cases[i][2]);
    g_autoptr(JsonNode) got = vmlet_merge_patch(target, patch);
    g_autofree char *text = json_to_string(got, FALSE);
    g_test_message("case %" G_GSIZE_FORMAT ": %s", i, text);
    g_assert_true(json_node_equal(got, want));
  }
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/specdiff/diff", test_diff);
  g_test_add_func("/specdiff/merge-patch", test_merge_patch);
  return g_test_run();
}
