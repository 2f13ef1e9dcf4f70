#include "quantity.h"
#include <string.h>

static void test_valid(void)
{
  static const struct {
    const char *text;
    guint64 bytes;
  } cases[] = {
      {"1Gi", 1ull << 30},       {"512Mi", 512ull << 20},    {"1G", 1000000000ull},
      {"1073741824", 1ull << 30}, {"1.5Gi", 3ull << 29},      {"100k", 100000},
      {"1Ki", 1024},             {"2Ti", 2ull << 40},        {"1e9", 1000000000ull},
      {"1E3", 1000},             {"0.5Ki", 512},             {"+1Mi", 1ull << 20},
      {"4000m", 4},              {"1e+3", 1000},             {"0", 0},
      {"7Ei", 7ull << 60},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    guint64 v = 0;
    const char *why = "unset";
    g_test_message("%s", cases[i].text);
    g_assert_true(vmlet_quantity_parse_bytes(cases[i].text, &v, &why));
    g_assert_cmpuint(v, ==, cases[i].bytes);
    g_assert_null(why);
  }
}

static void test_invalid(void)
{
  static const struct {
    const char *text;
    const char *why_contains;
  } cases[] = {
      {"", "Kubernetes quantity"},     {"1GB", "Kubernetes quantity"},
      {"Gi", "Kubernetes quantity"},   {"1 Gi", "Kubernetes quantity"},
      {"-1Gi", "not negative"},        {"1.5", "whole number of bytes"},
      {"1m", "whole number of bytes"}, {"8Ei", "below 8Ei"},
      {"1e", "Kubernetes quantity"},   {"1e99", "Kubernetes quantity"},
      {"1.2.3", "Kubernetes quantity"}, {"99999999999999999999999999999Ei", "below 8Ei"},
      {"0x10", "Kubernetes quantity"}, {"1Gi ", "Kubernetes quantity"},
      {"1234567890123456789012345678901234567890123", "Kubernetes quantity"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    guint64 v = 42;
    const char *why = NULL;
    g_test_message("%s", cases[i].text);
    g_assert_false(vmlet_quantity_parse_bytes(cases[i].text, &v, &why));
    g_assert_cmpuint(v, ==, 42); /* output untouched on failure */
    g_assert_nonnull(why);
    g_assert_nonnull(strstr(why, cases[i].why_contains));
  }
}

static void test_format(void)
{
  static const struct {
    guint64 bytes;
    const char *text;
  } cases[] = {
      {1ull << 30, "1Gi"}, {3ull << 29, "1536Mi"}, {1000000000ull, "1000000000"},
      {1024, "1Ki"},       {0, "0"},               {1ull << 60, "1Ei"},
      {1536, "1536"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *s = vmlet_quantity_format_bytes(cases[i].bytes);
    g_assert_cmpstr(s, ==, cases[i].text);
  }
}

/* format then parse gives the same number, for every power of two and neighbours. */
static void test_round_trip(void)
{
  for (guint shift = 0; shift < 62; shift++)
    for (gint64 delta = -1; delta <= 1; delta++) {
      guint64 b = (1ull << shift) + (guint64)delta;
      g_autofree char *s = vmlet_quantity_format_bytes(b);
      guint64 back = 0;
      const char *why = NULL;
      g_assert_true(vmlet_quantity_parse_bytes(s, &back, &why));
      g_assert_cmpuint(back, ==, b);
    }
}

static void test_duration(void)
{
  static const struct {
    const char *text;
    GTimeSpan us;
  } valid[] = {
      {"90s", 90 * G_TIME_SPAN_SECOND},
      {"5m", 5 * G_TIME_SPAN_MINUTE},
      {"1h30m", 90 * G_TIME_SPAN_MINUTE},
      {"1h0m5s", G_TIME_SPAN_HOUR + 5 * G_TIME_SPAN_SECOND},
      {"1500ms", 1500 * G_TIME_SPAN_MILLISECOND},
      {"2m3ms", 2 * G_TIME_SPAN_MINUTE + 3 * G_TIME_SPAN_MILLISECOND},
      {"0", 0},
      {"90", 90 * G_TIME_SPAN_SECOND}, /* vmlet's older --timeout S */
      {"8760h", 365 * G_TIME_SPAN_DAY},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(valid); i++) {
    GTimeSpan v = -1;
    const char *why = "unset";
    g_test_message("%s", valid[i].text);
    g_assert_true(vmlet_duration_parse(valid[i].text, &v, &why));
    g_assert_cmpint(v, ==, valid[i].us);
    g_assert_null(why);
  }
  static const struct {
    const char *text;
    const char *why_contains;
  } invalid[] = {
      {"", "such as"},      {"s", "such as"},      {"1h30", "such as"},  {"0h30", "such as"},
      {"-5s", "such as"},   {"1.5h", "such as"},   {"5 m", "such as"},   {"5d", "such as"},
      {"5M", "such as"},    {"8761h", "at most a year"},
      {"99999999999999999999s", "at most a year"}, {"8760h1ms", "at most a year"},
      {"123456789012345678901234567890123s", "such as"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(invalid); i++) {
    GTimeSpan v = 42;
    const char *why = NULL;
    g_test_message("%s", invalid[i].text);
    g_assert_false(vmlet_duration_parse(invalid[i].text, &v, &why));
    g_assert_cmpint(v, ==, 42);
    g_assert_nonnull(strstr(why, invalid[i].why_contains));
  }
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/quantity/valid", test_valid);
  g_test_add_func("/quantity/invalid", test_invalid);
  g_test_add_func("/quantity/format", test_format);
  g_test_add_func("/quantity/round-trip", test_round_trip);
  g_test_add_func("/quantity/duration", test_duration);
  return g_test_run();
}
