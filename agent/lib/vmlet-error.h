/* vmlet's one error domain. Library code fills a GError and never logs (docs/CONVENTIONS.md). */
#pragma once

#include <glib.h>

#define VMLET_ERROR (vmlet_error_quark())

typedef enum {
  VMLET_ERROR_INVALID,   /* input does not validate: spec, drop-in, option */
  VMLET_ERROR_NOT_FOUND, /* a referenced object or file does not exist */
  VMLET_ERROR_TOO_LARGE, /* an input exceeds its bound */
  VMLET_ERROR_IO,        /* reading or writing failed */
  VMLET_ERROR_EXISTS,    /* something that must be new exists already */
  VMLET_ERROR_CONFLICT,  /* the current state forbids it: a List drop-in, a disk held elsewhere */
  VMLET_ERROR_FORBIDDEN, /* the caller may not do this at all */
  VMLET_ERROR_MALFORMED, /* a request that cannot be read (not JSON) or asks nothing answerable */
  VMLET_ERROR_UNSUPPORTED, /* the object exists, the operation on it does not (HTTP: method) */
  VMLET_ERROR_UNAVAILABLE, /* a bound on concurrent use is reached; later may succeed */
} VmletErrorCode;

GQuark vmlet_error_quark(void);
