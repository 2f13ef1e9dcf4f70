/* What differs between the spec a running QEMU was started with and the desired spec, as
 * DVP's status.restartAwaitingChanges: [{operation, path, currentValue, desiredValue}] with
 * paths relative to .spec ("cpu.cores"). Fields DVP applies at once (runPolicy,
 * disruptions.restartApprovalMode) are not listed. Both specs carry their defaults
 * (vmspec.c), so an omitted default is not a change. Pure. */
#pragma once

#include <json-glib/json-glib.h>

JsonArray *vmlet_spec_diff(JsonNode *current, JsonNode *desired);

/* RFC 7386 JSON merge patch: returns the patched copy of target. */
JsonNode *vmlet_merge_patch(JsonNode *target, JsonNode *patch);
