/* Kubernetes resource quantities, as used by spec.memory.size and disk sizes. */
#pragma once

#include <glib.h>

/* Parses a quantity that must come out as a whole number of bytes: "1Gi", "512Mi", "1G",
 * "1.5Gi", "1e9", "1073741824". On failure returns FALSE and sets *why to a static text
 * saying what was expected. */
gboolean vmlet_quantity_parse_bytes(const char *text, guint64 *out, const char **why);

/* The shortest exact binary form ("1Gi", "512Mi", "1536Ki") or plain bytes. */
char *vmlet_quantity_format_bytes(guint64 bytes);
