/* vmspec.c's insides shared with vmspec-placement.c; nothing else includes this header. */
#pragma once

#include "diag.h"
#include "vmspec.h"

/* spec.affinity.nodeAffinity's required terms into vm->required_terms (errors into d). */
void vm_spec_parse_affinity(VmletDiag *d, JsonObject *spec_obj, VmSpec *vm);
/* The free function of vm->required_terms' elements. */
void vm_selector_term_free(gpointer p);
