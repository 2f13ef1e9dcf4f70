/* Kubernetes resource quantities, as used by spec.memory.size and disk sizes, and the
 * durations kubectl's --timeout takes. */
#pragma once

#include <glib.h>

/* Parses a quantity that must come out as a whole number of bytes: "1Gi", "512Mi", "1G",
 * "1.5Gi", "1e9", "1073741824". On failure returns FALSE and sets *why to a static text
 * saying what was expected. */
gboolean vmlet_quantity_parse_bytes(const char *text, guint64 *out, const char **why);

/* The shortest exact binary form ("1Gi", "512Mi", "1536Ki") or plain bytes. */
char *vmlet_quantity_format_bytes(guint64 bytes);

/* A duration as Go's time.ParseDuration writes whole ones, kubectl's --timeout: numbers
 * each with a unit h, m, s or ms, in any combination ("90s", "5m", "1h30m", "1500ms");
 * "0"; and, as vmlet's older --timeout S options take, a bare number of seconds ("90").
 * At most a year. On failure returns FALSE, *out untouched, *why a static text. */
gboolean vmlet_duration_parse(const char *text, GTimeSpan *out, const char **why);
