/* The API's one mapping from a failure to its answer: a Kubernetes Status object (code,
 * reason, message), so clients that speak the Kubernetes API understand it. Pure: no
 * libsoup, shared by every transport (the unix socket today, a peer API later). */
#pragma once

#include <json-glib/json-glib.h>

#include "vmlet-error.h"

/* The HTTP status and Kubernetes reason for error: a VMLET_ERROR code by its meaning (NotFound
 * 404, Invalid 422, Conflict 409, BadRequest 400, ...); any other domain is InternalError 500. */
guint vmlet_api_error_status(const GError *error, const char **reason);

/* {"apiVersion": "v1", "kind": "Status", ...}: also the shape of the API's few answers
 * without an object (200 Deleted, 202 Accepted). */
JsonNode *vmlet_api_status_new(guint code, const char *reason, const char *message);

/* The one wording of a missing object: `virtualmachines "x" not found in namespace "y"`,
 * resource being the plural of the API path. */
void vmlet_api_set_not_found(GError **error, const char *resource, const char *ns,
                             const char *name);

#define VMLET_RESOURCE_VMS "virtualmachines"
#define VMLET_RESOURCE_VMBDAS "virtualmachineblockdeviceattachments"
#define VMLET_RESOURCE_OPERATIONS "virtualmachineoperations"
