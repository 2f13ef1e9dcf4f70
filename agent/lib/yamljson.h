/* YAML documents (the DVP guide's examples, kubectl-style manifests) as JSON, so every
 * kind vmlet reads can be written either way. Plain scalars resolve as YAML 1.2's core
 * schema does (null, true/false, integers, floats, else strings); quoted and block scalars
 * are strings. Anchors and aliases are refused (they allow exponential expansion), nesting
 * is bounded like JSON's, and several documents become a `kind: List`. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

/* Does this look like YAML rather than JSON? (First non-blank byte is not '{' or '['.) */
gboolean vmlet_looks_like_yaml(const char *data, gsize len);

/* Converts data to JSON text. Errors are "SOURCE:LINE:COLUMN: problem". */
char *vmlet_yaml_to_json(const char *source, const char *data, gsize len, gsize *out_len,
                         GError **error);

/* Reads a manifest file ("-" for stdin, bounded like a drop-in) as JSON text: JSON as it
 * is, YAML converted. */
gboolean vmlet_read_manifest(const char *path, char **out_json, gsize *out_len, GError **error);
