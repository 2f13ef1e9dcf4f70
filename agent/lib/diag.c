#include "diag.h"

#include "vmlet-error.h"

/* A hostile document could produce an error per element; a person never needs more than
 * this many lines to start fixing, and the bound keeps memory use flat. */
#define VMLET_DIAG_MAX_ENTRIES 64

VmletDiag *vmlet_diag_new(const char *source)
{
  VmletDiag *d = g_new0(VmletDiag, 1);
  d->source = g_strdup(source ? source : "<input>");
  d->errors = g_ptr_array_new_with_free_func(g_free);
  d->warnings = g_ptr_array_new_with_free_func(g_free);
  return d;
}

void vmlet_diag_free(VmletDiag *diag)
{
  if (!diag)
    return;
  g_free(diag->source);
  g_ptr_array_unref(diag->errors);
  g_ptr_array_unref(diag->warnings);
  g_free(diag);
}

G_GNUC_PRINTF(3, 0) static void add_entry(GPtrArray *list, const char *path, const char *fmt, va_list ap)
{
  if (list->len >= VMLET_DIAG_MAX_ENTRIES)
    return;
  g_autofree char *text = g_strdup_vprintf(fmt, ap);
  if (list->len == VMLET_DIAG_MAX_ENTRIES - 1)
    g_ptr_array_add(list, g_strdup("(further problems not shown)"));
  else if (path && *path)
    g_ptr_array_add(list, g_strdup_printf("%s: %s", path, text));
  else
    g_ptr_array_add(list, g_steal_pointer(&text));
}

void vmlet_diag_error(VmletDiag *diag, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  add_entry(diag->errors, path, fmt, ap);
  va_end(ap);
}

void vmlet_diag_warn(VmletDiag *diag, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  add_entry(diag->warnings, path, fmt, ap);
  va_end(ap);
}

gboolean vmlet_diag_has_errors(const VmletDiag *diag)
{
  return diag->errors->len > 0;
}

static char *join_prefixed(const char *source, GPtrArray *list)
{
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < list->len; i++) {
    if (i)
      g_string_append_c(s, '\n');
    g_string_append_printf(s, "%s: %s", source, (const char *)list->pdata[i]);
  }
  return g_string_free(s, FALSE);
}

gboolean vmlet_diag_check(const VmletDiag *diag, GError **error)
{
  if (!vmlet_diag_has_errors(diag))
    return TRUE;
  g_autofree char *msg = join_prefixed(diag->source, diag->errors);
  g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_INVALID, msg);
  return FALSE;
}

GStrv vmlet_diag_warning_lines(const VmletDiag *diag)
{
  GStrv out = g_new0(char *, diag->warnings->len + 1);
  for (guint i = 0; i < diag->warnings->len; i++)
    out[i] = g_strdup_printf("%s: %s", diag->source, (const char *)diag->warnings->pdata[i]);
  return out;
}

void vmlet_diag_merge(VmletDiag *diag, const VmletDiag *other)
{
  for (guint i = 0; i < other->errors->len; i++)
    vmlet_diag_error(diag, NULL, "%s", (const char *)other->errors->pdata[i]);
  for (guint i = 0; i < other->warnings->len; i++)
    vmlet_diag_warn(diag, NULL, "%s", (const char *)other->warnings->pdata[i]);
}
