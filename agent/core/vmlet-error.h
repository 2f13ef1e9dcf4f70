/* vmlet's one error domain. Library code fills a GError and never logs (STYLE.md). */
#pragma once

#include <glib.h>

#define VMLET_ERROR (vmlet_error_quark())

typedef enum {
  VMLET_ERROR_INVALID,   /* input does not validate: spec, drop-in, option */
  VMLET_ERROR_NOT_FOUND, /* a referenced object or file does not exist */
  VMLET_ERROR_TOO_LARGE, /* an input exceeds its bound */
  VMLET_ERROR_IO,        /* reading or writing failed */
  VMLET_ERROR_EXISTS,    /* something that must be new exists already */
} VmletErrorCode;

GQuark vmlet_error_quark(void);
