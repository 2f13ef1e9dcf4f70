#include <string.h>

#include "jsonval.h"
#include "vmlet-error.h"

static void assert_parse_error(const char *data, const char *expected_message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = vmlet_json_parse("f.json", data, -1, &error);
  g_assert_null(node);
  g_assert_error(error, VMLET_ERROR, error->code);
  g_test_message("%s", error->message);
  g_assert_cmpstr(error->message, ==, expected_message);
}

static void test_parse_errors(void)
{
  /* json-glib reports line:column; the source name replaces its "<data>". */
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = vmlet_json_parse("f.json", "{\n  \"a\": 1,\n  \"b\": }\n", -1, &error);
  g_assert_null(node);
  g_assert_true(g_str_has_prefix(error->message, "f.json:3:"));
  assert_parse_error("[1, 2]", "f.json: expected a JSON object at the top level, found an array of 2");
  assert_parse_error("", "f.json: expected a JSON object at the top level, found an empty document");
  assert_parse_error("\"x\"", "f.json: expected a JSON object at the top level, found \"x\"");
}

static void test_depth_limit(void)
{
  GString *s = g_string_new(NULL);
  for (int i = 0; i < 100000; i++)
    g_string_append_c(s, '[');
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = vmlet_json_parse("deep.json", s->str, (gssize)s->len, &error);
  g_assert_null(node);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
  g_assert_cmpstr(error->message, ==, "deep.json:1:33: JSON nested deeper than 32 levels");
  g_string_free(s, TRUE);

  /* Brackets inside strings do not count. */
  g_autoptr(GError) e2 = NULL;
  g_autoptr(JsonNode) ok = vmlet_json_parse("s.json", "{\"a\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[\"}", -1, &e2);
  g_assert_no_error(e2);
  g_assert_nonnull(ok);
}

static void test_nul_byte(void)
{
  static const char data[] = "{\"a\": \"x\0y\"}";
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = vmlet_json_parse("nul.json", data, sizeof(data) - 1, &error);
  g_assert_null(node);
  g_assert_cmpstr(error->message, ==, "nul.json: expected JSON text, found a NUL byte");
}

static JsonObject *parse_obj(const char *text, JsonNode **keep)
{
  g_autoptr(GError) error = NULL;
  *keep = vmlet_json_parse("t", text, -1, &error);
  g_assert_no_error(error);
  return json_node_get_object(*keep);
}

static void test_getters(void)
{
  g_autoptr(JsonNode) root = NULL;
  JsonObject *o = parse_obj("{\"s\": \"hello\", \"i\": 7, \"f\": 1.5, \"b\": true, \"n\": null, "
                            "\"o\": {}, \"a\": [1,2,3], \"e\": \"Manual\"}", &root);
  g_autoptr(VmletDiag) d = vmlet_diag_new("t");
  const char *s = NULL;
  gint64 i = 0;
  gboolean b = FALSE;
  guint e = 99;
  JsonObject *obj = NULL;
  JsonArray *arr = NULL;
  static const char *const names[] = {"Auto", "Manual", NULL};

  g_assert_true(jv_get_string(d, o, "x", "s", JV_REQUIRED, 10, &s));
  g_assert_cmpstr(s, ==, "hello");
  g_assert_true(jv_get_int(d, o, "x", "i", JV_REQUIRED, 1, 10, &i));
  g_assert_cmpint(i, ==, 7);
  g_assert_true(jv_get_bool(d, o, "x", "b", JV_REQUIRED, &b));
  g_assert_true(b);
  g_assert_true(jv_get_enum(d, o, "x", "e", JV_REQUIRED, names, &e));
  g_assert_cmpuint(e, ==, 1);
  g_assert_true(jv_get_object(d, o, "x", "o", JV_REQUIRED, &obj));
  g_assert_true(jv_get_array(d, o, "x", "a", JV_REQUIRED, 3, &arr));
  g_assert_cmpuint(d->errors->len, ==, 0);

  /* null and absent are the same: absent. Optional records nothing. */
  g_assert_false(jv_get_string(d, o, "x", "n", JV_OPTIONAL, 10, &s));
  g_assert_false(jv_get_string(d, o, "x", "missing", JV_OPTIONAL, 10, &s));
  g_assert_cmpuint(d->errors->len, ==, 0);

  s = "untouched";
  g_assert_false(jv_get_string(d, o, "x", "i", JV_REQUIRED, 10, &s));
  g_assert_cmpstr(s, ==, "untouched");
  g_assert_false(jv_get_int(d, o, "x", "f", JV_REQUIRED, 0, 10, &i));
  g_assert_false(jv_get_int(d, o, "x", "i", JV_REQUIRED, 8, 10, &i));
  g_assert_false(jv_get_string(d, o, "x", "s", JV_REQUIRED, 4, &s));
  g_assert_false(jv_get_enum(d, o, "", "s", JV_REQUIRED, names, &e));
  g_assert_false(jv_get_array(d, o, "x", "a", JV_REQUIRED, 2, &arr));
  g_assert_false(jv_get_object(d, o, "x", "n", JV_REQUIRED, &obj));
  g_assert_false(jv_get_bool(d, o, "x", "s", JV_REQUIRED, &b));

  const char *expected[] = {
      "x.i: expected a string, found 7",
      "x.f: expected an integer, found 1.5",
      "x.i: expected an integer from 8 to 10, found 7",
      "x.s: expected at most 4 bytes, found 5",
      "s: expected one of Auto, Manual, found \"hello\"",
      "x.a: expected at most 2 entries, found 3",
      "x.n: expected an object, found nothing (the field is required)",
      "x.s: expected true or false, found \"hello\"",
  };
  g_assert_cmpuint(d->errors->len, ==, G_N_ELEMENTS(expected));
  for (gsize k = 0; k < G_N_ELEMENTS(expected); k++)
    g_assert_cmpstr(d->errors->pdata[k], ==, expected[k]);
}

static void test_unknown_members(void)
{
  g_autoptr(JsonNode) root = NULL;
  JsonObject *o = parse_obj("{\"cores\": 1, \"coreFractoin\": \"10%\"}", &root);
  g_autoptr(VmletDiag) d = vmlet_diag_new("vm.json");
  static const char *const known[] = {"cores", "coreFraction", NULL};
  jv_warn_unknown(d, o, "spec.cpu", known);
  g_assert_cmpuint(d->errors->len, ==, 0);
  g_auto(GStrv) lines = vmlet_diag_warning_lines(d);
  g_assert_cmpuint(g_strv_length(lines), ==, 1);
  g_assert_cmpstr(lines[0], ==, "vm.json: spec.cpu.coreFractoin: unknown field, ignored");
}

static void test_quote(void)
{
  g_autofree char *q1 = vmlet_quote_for_message("a\"b\n\x01");
  g_assert_cmpstr(q1, ==, "\"a\\\"b\\n\\u0001\"");
  char long_text[200];
  memset(long_text, 'x', sizeof(long_text) - 1);
  long_text[199] = '\0';
  g_autofree char *q2 = vmlet_quote_for_message(long_text);
  g_assert_cmpuint(strlen(q2), ==, 1 + 64 + 3 + 1);
  g_autofree char *q3 = vmlet_quote_for_message("\xff\xfe");
  g_assert_cmpstr(q3, ==, "\"\\ufffd\"");
}

static void test_diag_bounded(void)
{
  g_autoptr(VmletDiag) d = vmlet_diag_new("f");
  for (int i = 0; i < 10000; i++)
    vmlet_diag_error(d, "p", "problem %d", i);
  g_assert_cmpuint(d->errors->len, ==, 64);
  g_assert_cmpstr(d->errors->pdata[63], ==, "(further problems not shown)");
  g_autoptr(GError) error = NULL;
  g_assert_false(vmlet_diag_check(d, &error));
  g_assert_true(g_str_has_prefix(error->message, "f: p: problem 0\nf: p: problem 1\n"));
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/json/parse-errors", test_parse_errors);
  g_test_add_func("/json/depth-limit", test_depth_limit);
  g_test_add_func("/json/nul-byte", test_nul_byte);
  g_test_add_func("/json/getters", test_getters);
  g_test_add_func("/json/unknown-members", test_unknown_members);
  g_test_add_func("/json/quote", test_quote);
  g_test_add_func("/json/diag-bounded", test_diag_bounded);
  return g_test_run();
}
