#include "nocloud.h"

#include <string.h>
#include <yaml.h>

#include "iso.h"
#include "vmlet-error.h"

#define INSTANCE_ID_HEX_DIGITS 16
/* Enough of a Secret key to recognise it in an error message. */
#define MAX_SHOWN_KEY 64

static char *instance_id_full(const char *ns, const char *name, const char *user_data,
                              gsize len, const char *network_config)
{
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  g_checksum_update(sum, (const guchar *)ns, (gssize)strlen(ns));
  g_checksum_update(sum, (const guchar *)"/", 1);
  g_checksum_update(sum, (const guchar *)name, (gssize)strlen(name));
  /* The NUL ends the name, which cannot contain one, so name and content cannot trade
   * bytes and hash the same. */
  g_checksum_update(sum, (const guchar *)"", 1);
  if (user_data && len > 0)
    g_checksum_update(sum, (const guchar *)user_data, (gssize)len);
  if (network_config) {
    static const char marker[] = "\0network-config\0";
    g_checksum_update(sum, (const guchar *)marker, sizeof marker - 1);
    g_checksum_update(sum, (const guchar *)network_config, (gssize)strlen(network_config));
  }
  const char *hex = g_checksum_get_string(sum);
  return g_strdup_printf("%s-%.*s", name, INSTANCE_ID_HEX_DIGITS, hex);
}

char *vmlet_nocloud_instance_id(const char *ns, const char *name, const char *user_data_or_null,
                                gsize len)
{
  g_return_val_if_fail(ns != NULL && name != NULL, NULL);
  return instance_id_full(ns, name, user_data_or_null, len, NULL);
}

/* YAML 1.1 (PyYAML, which cloud-init uses) resolves these plain scalars to booleans or
 * null rather than strings. */
static gboolean is_yaml11_keyword(const char *s)
{
  static const char *const words[] = {"y", "n", "yes", "no", "on", "off", "true", "false",
                                      "null"};
  for (gsize i = 0; i < G_N_ELEMENTS(words); i++) {
    if (g_ascii_strcasecmp(s, words[i]) == 0)
      return TRUE;
  }
  return FALSE;
}

/* A plain scalar is safe when it starts with a letter (so it is no number, and no YAML
 * indicator such as '-', '.', '&', '*') and holds only DNS label characters. */
static gboolean is_plain_safe(const char *s)
{
  if (!g_ascii_isalpha(s[0]) || is_yaml11_keyword(s))
    return FALSE;
  for (const char *p = s; *p; p++) {
    if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
      return FALSE;
  }
  return TRUE;
}

/* A double-quoted YAML scalar that reads back as exactly s. Everything outside printable
 * ASCII is escaped, so line breaks (including U+0085, U+2028, U+2029) cannot end the
 * value; bytes that are not UTF-8 become \xNN. */
static void append_yaml_value(GString *out, const char *s)
{
  if (is_plain_safe(s)) {
    g_string_append(out, s);
    return;
  }
  g_string_append_c(out, '"');
  const char *p = s;
  while (*p) {
    guchar c = (guchar)*p;
    if (c == '"' || c == '\\') {
      g_string_append_c(out, '\\');
      g_string_append_c(out, (char)c);
      p++;
    } else if (c >= 0x20 && c < 0x7f) {
      g_string_append_c(out, (char)c);
      p++;
    } else if (c < 0x80) {
      g_string_append_printf(out, "\\x%02x", c);
      p++;
    } else {
      gunichar u = g_utf8_get_char_validated(p, -1);
      if (u == (gunichar)-1 || u == (gunichar)-2) {
        g_string_append_printf(out, "\\x%02x", c);
        p++;
      } else {
        if (u <= 0xffff)
          g_string_append_printf(out, "\\u%04x", (unsigned)u);
        else
          g_string_append_printf(out, "\\U%08x", (unsigned)u);
        p = g_utf8_next_char(p);
      }
    }
  }
  g_string_append_c(out, '"');
}

char *vmlet_nocloud_meta_data(const char *instance_id, const char *hostname)
{
  g_return_val_if_fail(instance_id != NULL && hostname != NULL, NULL);
  GString *out = g_string_new("instance-id: ");
  append_yaml_value(out, instance_id);
  g_string_append(out, "\nlocal-hostname: ");
  append_yaml_value(out, hostname);
  g_string_append_c(out, '\n');
  return g_string_free(out, FALSE);
}

gboolean vmlet_nocloud_write(const char *path, const char *ns, const char *name,
                             const char *user_data, gsize len,
                             const char *network_config_or_null, GError **error)
{
  g_return_val_if_fail(path != NULL && ns != NULL && name != NULL, FALSE);

  g_autofree char *instance_id =
      instance_id_full(ns, name, user_data, len, network_config_or_null);
  g_autofree char *meta_data = vmlet_nocloud_meta_data(instance_id, name);
  VmletIsoFile files[3] = {
      {.name = "user-data", .data = user_data, .len = len},
      {.name = "meta-data", .data = meta_data, .len = strlen(meta_data)},
  };
  gsize n_files = 2;
  if (network_config_or_null) {
    files[n_files++] = (VmletIsoFile){.name = "network-config",
                                      .data = network_config_or_null,
                                      .len = strlen(network_config_or_null)};
  }
  return vmlet_iso_write(path, VMLET_NOCLOUD_VOLUME_ID, files, n_files, error);
}

static char *shown_key(const char *key)
{
  g_autofree char *escaped = g_strescape(key, NULL);
  if (strlen(escaped) <= MAX_SHOWN_KEY)
    return g_steal_pointer(&escaped);
  return g_strdup_printf("%.*s...", MAX_SHOWN_KEY, escaped);
}

gboolean vmlet_sysprep_write(const char *path, GPtrArray *names, GPtrArray *blobs,
                             GError **error)
{
  g_return_val_if_fail(path != NULL && names != NULL && blobs != NULL, FALSE);

  /* Windows Setup looks for exactly these names (autounattend.xml on removable media
   * during installation, unattend.xml for the specialize/oobe passes). */
  static const char *const wanted[] = {"autounattend.xml", "unattend.xml"};
  if (names->len != blobs->len) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: Sysprep: %u keys but %u values", path, names->len, blobs->len);
    return FALSE;
  }
  if (names->len == 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: Sysprep: no autounattend.xml or unattend.xml", path);
    return FALSE;
  }
  VmletIsoFile files[G_N_ELEMENTS(wanted)];
  gsize n_files = 0;
  for (guint i = 0; i < names->len; i++) {
    const char *key = g_ptr_array_index(names, i);
    GBytes *blob = g_ptr_array_index(blobs, i);
    if (!key || !blob) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: Sysprep: entry %u has no key or no value", path, i);
      return FALSE;
    }
    const char *match = NULL;
    for (gsize w = 0; w < G_N_ELEMENTS(wanted); w++) {
      if (g_ascii_strcasecmp(key, wanted[w]) == 0)
        match = wanted[w];
    }
    g_autofree char *shown = shown_key(key);
    if (!match) {
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                  "%s: Sysprep key \"%s\": expected autounattend.xml or unattend.xml", path,
                  shown);
      return FALSE;
    }
    for (gsize j = 0; j < n_files; j++) {
      if (files[j].name == match) {
        g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                    "%s: Sysprep key \"%s\": %s is given twice (keys differ only in case)",
                    path, shown, match);
        return FALSE;
      }
    }
    gsize size = 0;
    const void *data = g_bytes_get_data(blob, &size);
    files[n_files++] = (VmletIsoFile){.name = match, .data = data, .len = size};
  }
  return vmlet_iso_write(path, VMLET_SYSPREP_VOLUME_ID, files, n_files, error);
}

/* cloud-init picks the part handler by the start of the payload, lower-cased and with
 * leading whitespace stripped (user_data.py, type_from_starts_with). Only a plain
 * "#cloud-config" first line is taken here: "#cloud-config-archive" and
 * "#cloud-config-jsonp" are other formats. */
static gboolean is_cloud_config(const char *data, gsize len)
{
  static const char tag[] = "#cloud-config";
  gsize i = 0;
  while (i < len && g_ascii_isspace(data[i]))
    i++;
  if (len - i < sizeof tag - 1 || g_ascii_strncasecmp(data + i, tag, sizeof tag - 1) != 0)
    return FALSE;
  i += sizeof tag - 1;
  return i == len || data[i] == '\n' || data[i] == '\r' || data[i] == ' ' || data[i] == '\t';
}

/* libyaml's scanner re-examines every open flow level for each token, so 1 MiB of "["
 * takes minutes; cloud-config documents nest a handful of levels. Stopping at this depth
 * keeps a check of a hostile document to milliseconds. */
#define MAX_CHECK_DEPTH 64

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(yaml_parser_t, yaml_parser_delete)

static void warn_yaml_error(const yaml_parser_t *parser, GPtrArray *warnings)
{
  const char *problem = parser->problem ? parser->problem : "cannot parse";
  GString *msg = g_string_new("user-data: #cloud-config is not valid YAML: ");
  switch (parser->error) {
  case YAML_MEMORY_ERROR:
    g_string_append(msg, "out of memory while parsing");
    break;
  case YAML_READER_ERROR:
    /* The reader (encoding, control characters) reports a byte offset, not a mark. */
    g_string_append_printf(msg, "%s at byte %zu", problem, parser->problem_offset);
    break;
  case YAML_SCANNER_ERROR:
  case YAML_PARSER_ERROR:
  case YAML_COMPOSER_ERROR:
  case YAML_WRITER_ERROR:
  case YAML_EMITTER_ERROR:
  case YAML_NO_ERROR:
    /* libyaml's marks count from 0; editors count from 1. */
    g_string_append_printf(msg, "%s at line %zu, column %zu", problem,
                           parser->problem_mark.line + 1, parser->problem_mark.column + 1);
    if (parser->context)
      g_string_append_printf(msg, " (%s at line %zu, column %zu)", parser->context,
                             parser->context_mark.line + 1, parser->context_mark.column + 1);
    break;
  }
  g_ptr_array_add(warnings, g_string_free(msg, FALSE));
}

void vmlet_user_data_check(const char *user_data, gsize len, GPtrArray *warnings)
{
  g_return_if_fail(warnings != NULL);
  if (!user_data || !is_cloud_config(user_data, len))
    return;
  if (len > VMLET_USER_DATA_CHECK_MAX_BYTES) {
    g_ptr_array_add(warnings,
                    g_strdup_printf("user-data: #cloud-config is %" G_GSIZE_FORMAT
                                    " bytes; YAML syntax was not checked (limit %d bytes)",
                                    len, VMLET_USER_DATA_CHECK_MAX_BYTES));
    return;
  }
  /* The event parser keeps its state on the heap, so deep nesting cannot exhaust the
   * stack (libyaml's document loader recurses; it is not used). */
  g_auto(yaml_parser_t) parser = {0};
  int depth = 0;
  if (!yaml_parser_initialize(&parser)) {
    g_ptr_array_add(warnings,
                    g_strdup("user-data: #cloud-config was not checked: libyaml failed to start"));
    return;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)user_data, len);
  for (;;) {
    yaml_event_t event;
    if (!yaml_parser_parse(&parser, &event)) {
      warn_yaml_error(&parser, warnings);
      return;
    }
    gboolean done = FALSE;
    switch (event.type) {
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
      depth++;
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      depth--;
      break;
    case YAML_STREAM_END_EVENT:
      done = TRUE;
      break;
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
    case YAML_ALIAS_EVENT:
    case YAML_SCALAR_EVENT:
      break;
    }
    if (depth > MAX_CHECK_DEPTH) {
      g_ptr_array_add(warnings,
                      g_strdup_printf("user-data: #cloud-config nests deeper than %d levels at "
                                      "line %zu, column %zu; the rest was not checked",
                                      MAX_CHECK_DEPTH, event.start_mark.line + 1,
                                      event.start_mark.column + 1));
      done = TRUE;
    }
    yaml_event_delete(&event);
    if (done)
      return;
  }
}
