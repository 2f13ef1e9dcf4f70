#include "quantity.h"

#include <string.h>

/* Longer strings are never meaningful quantities; bounding keeps the arithmetic simple. */
#define QUANTITY_MAX_LEN 40

typedef unsigned __int128 u128;

static u128 pow10_u128(unsigned n)
{
  u128 v = 1;
  while (n--)
    v *= 10;
  return v;
}

gboolean vmlet_quantity_parse_bytes(const char *text, guint64 *out, const char **why)
{
  static const char *const syntax =
      "a Kubernetes quantity such as \"1Gi\", \"512Mi\", \"1G\" or a number of bytes";
  *why = syntax;
  if (!text || !*text || strlen(text) > QUANTITY_MAX_LEN)
    return FALSE;

  const char *p = text;
  if (*p == '+')
    p++;
  if (*p == '-') {
    *why = "a quantity that is not negative";
    return FALSE;
  }
  u128 digits = 0;
  unsigned n_int = 0, n_frac = 0;
  for (; g_ascii_isdigit(*p); p++, n_int++)
    digits = digits * 10 + (unsigned)(*p - '0');
  if (*p == '.') {
    p++;
    for (; g_ascii_isdigit(*p); p++, n_frac++)
      digits = digits * 10 + (unsigned)(*p - '0');
  }
  if (n_int + n_frac == 0 || n_int + n_frac > 30)
    return FALSE;

  /* value = digits * num / den, which must be a whole number. */
  u128 num = 1, den = pow10_u128(n_frac);
  static const struct {
    const char *suffix;
    unsigned base, power;
  } suffixes[] = {
      {"Ki", 2, 10}, {"Mi", 2, 20}, {"Gi", 2, 30}, {"Ti", 2, 40}, {"Pi", 2, 50}, {"Ei", 2, 60},
      {"k", 10, 3},  {"M", 10, 6},  {"G", 10, 9},  {"T", 10, 12}, {"P", 10, 15}, {"E", 10, 18},
  };
  if (*p == '\0') {
    /* plain number */
  } else if (g_str_equal(p, "m")) {
    den *= 1000;
  } else if ((*p == 'e' || *p == 'E') && (g_ascii_isdigit(p[1]) || p[1] == '+' || p[1] == '-')) {
    /* "1e3" is an exponent; "1Ei" and "1E" are suffixes (exbibytes, exabytes). */
    const char *e = p + 1;
    gboolean neg = FALSE;
    if (*e == '+' || *e == '-')
      neg = (*e++ == '-');
    unsigned exp = 0;
    if (!*e)
      return FALSE;
    for (; g_ascii_isdigit(*e); e++) {
      exp = exp * 10 + (unsigned)(*e - '0');
      if (exp > 30)
        return FALSE;
    }
    if (*e)
      return FALSE;
    if (neg)
      den *= pow10_u128(exp);
    else
      num = pow10_u128(exp);
  } else {
    gboolean found = FALSE;
    for (gsize i = 0; i < G_N_ELEMENTS(suffixes); i++) {
      if (g_str_equal(p, suffixes[i].suffix)) {
        num = suffixes[i].base == 2 ? ((u128)1 << suffixes[i].power)
                                    : pow10_u128(suffixes[i].power);
        found = TRUE;
        break;
      }
    }
    if (!found)
      return FALSE;
  }
  /* digits and num are each below 10^31; their product can exceed 128 bits, so check. */
  if (digits != 0 && num > ((u128)~(u128)0) / digits) {
    *why = "a quantity below 8Ei";
    return FALSE;
  }
  u128 prod = digits * num;
  if (prod % den != 0) {
    *why = "a whole number of bytes";
    return FALSE;
  }
  u128 v = prod / den;
  if (v > (u128)G_MAXINT64) {
    *why = "a quantity below 8Ei";
    return FALSE;
  }
  *out = (guint64)v;
  *why = NULL;
  return TRUE;
}

char *vmlet_quantity_format_bytes(guint64 bytes)
{
  static const char *const units[] = {"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"};
  if (bytes == 0)
    return g_strdup("0");
  for (gsize i = 0; i < G_N_ELEMENTS(units); i++) {
    guint shift = 10 * (guint)(G_N_ELEMENTS(units) - i);
    guint64 unit = (guint64)1 << shift;
    if (bytes % unit == 0)
      return g_strdup_printf("%" G_GUINT64_FORMAT "%s", bytes / unit, units[i]);
  }
  return g_strdup_printf("%" G_GUINT64_FORMAT, bytes);
}

/* Longer than "8760h0m0s0ms" and then some: no sensible timeout. */
#define DURATION_MAX_LEN 32
#define DURATION_MAX (G_TIME_SPAN_DAY * 365)

/* The unit at *p (advanced past it) in microseconds, or 0 when there is none. */
static GTimeSpan duration_unit(const char **p)
{
  static const struct {
    const char *name;
    GTimeSpan us;
  } units[] = {
      /* "ms" before "m": the longest match. */
      {"ms", G_TIME_SPAN_MILLISECOND},
      {"h", G_TIME_SPAN_HOUR},
      {"m", G_TIME_SPAN_MINUTE},
      {"s", G_TIME_SPAN_SECOND},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(units); i++)
    if (g_str_has_prefix(*p, units[i].name)) {
      *p += strlen(units[i].name);
      return units[i].us;
    }
  return 0;
}

gboolean vmlet_duration_parse(const char *text, GTimeSpan *out, const char **why)
{
  *why = "a duration such as \"90s\", \"5m\" or \"1h30m\" (whole numbers, units h, m, s, ms)";
  if (!text || !*text || strlen(text) > DURATION_MAX_LEN)
    return FALSE;
  GTimeSpan total = 0;
  const char *p = text;
  for (gboolean first = TRUE; *p; first = FALSE) {
    if (!g_ascii_isdigit(*p))
      return FALSE;
    guint64 n = 0;
    /* Bounded by DURATION_MAX_LEN: at most 32 digits would overflow, so check as we go. */
    for (; g_ascii_isdigit(*p); p++) {
      n = n * 10 + (guint64)(*p - '0');
      if (n > (guint64)DURATION_MAX) {
        *why = "a duration of at most a year";
        return FALSE;
      }
    }
    GTimeSpan unit = duration_unit(&p);
    /* A bare number is seconds, but only as the whole text: "1h30" is a mistake. */
    if (!unit && (*p || !first))
      return FALSE;
    if (!unit)
      unit = G_TIME_SPAN_SECOND;
    if ((guint64)(DURATION_MAX - total) / (guint64)unit < n) {
      *why = "a duration of at most a year";
      return FALSE;
    }
    total += (GTimeSpan)n * unit;
  }
  *why = NULL;
  *out = total;
  return TRUE;
}
