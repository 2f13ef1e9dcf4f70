/* Diagnostics collected while validating one input document.
 *
 * Validation does not stop at the first problem: a person fixing a drop-in wants every
 * problem at once. Each entry carries the JSON path it is about; the source name (usually
 * the file) is prefixed when the diagnostics are turned into a GError or printed. */
#pragma once

#include <glib.h>

typedef struct {
  char *source;       /* e.g. "vms.d/linux-vm.json" */
  GPtrArray *errors;  /* char *, "spec.cpu.cores: expected ..., found ..." */
  GPtrArray *warnings;
} VmletDiag;

VmletDiag *vmlet_diag_new(const char *source);
void vmlet_diag_free(VmletDiag *diag);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletDiag, vmlet_diag_free)

/* path may be NULL or "" for the document as a whole. */
void vmlet_diag_error(VmletDiag *diag, const char *path, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
void vmlet_diag_warn(VmletDiag *diag, const char *path, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

gboolean vmlet_diag_has_errors(const VmletDiag *diag);

/* When there are errors: fills error with every error, one per line, each prefixed with
 * "source: ", and returns FALSE. Otherwise returns TRUE. */
gboolean vmlet_diag_check(const VmletDiag *diag, GError **error);

/* Each warning as "source: path: text"; NULL-terminated, caller frees. */
GStrv vmlet_diag_warning_lines(const VmletDiag *diag);

/* Appends the other diagnostics (already prefixed paths) to diag. */
void vmlet_diag_merge(VmletDiag *diag, const VmletDiag *other);
