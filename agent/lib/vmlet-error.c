#include "vmlet-error.h"

G_DEFINE_QUARK(vmlet-error-quark, vmlet_error)
