#include "errors.h"

#include "mig-error.h"

guint vmlet_api_error_status(const GError *error, const char **reason)
{
  if (error->domain == VMLET_ERROR) {
    switch ((VmletErrorCode)error->code) {
    case VMLET_ERROR_INVALID:
      *reason = "Invalid";
      return 422;
    case VMLET_ERROR_NOT_FOUND:
      *reason = "NotFound";
      return 404;
    case VMLET_ERROR_TOO_LARGE:
      *reason = "RequestEntityTooLarge";
      return 413;
    case VMLET_ERROR_IO:
      *reason = "InternalError";
      return 500;
    case VMLET_ERROR_EXISTS:
      *reason = "AlreadyExists";
      return 409;
    case VMLET_ERROR_CONFLICT:
      *reason = "Conflict";
      return 409;
    case VMLET_ERROR_FORBIDDEN:
      *reason = "Forbidden";
      return 403;
    case VMLET_ERROR_MALFORMED:
      *reason = "BadRequest";
      return 400;
    case VMLET_ERROR_UNSUPPORTED:
      *reason = "MethodNotAllowed";
      return 405;
    case VMLET_ERROR_UNAVAILABLE:
      *reason = "ServiceUnavailable";
      return 503;
    }
  }
  /* A migration's refusal keeps DVP's reason (TargetUnschedulable, TargetDiskError, ...). */
  if (error->domain == VMLET_MIG_ERROR) {
    *reason = vmlet_mig_error_reason((VmletMigError)error->code);
    return vmlet_mig_error_status((VmletMigError)error->code);
  }
  /* Another library's error reached the edge unclassified: vmletd's fault, not the client's. */
  *reason = "InternalError";
  return 500;
}

JsonNode *vmlet_api_status_new(guint code, const char *reason, const char *message)
{
  /* "Failure" also for 200 Deleted and 202 Accepted (Kubernetes says "Success" there): what
   * vmletd has always answered, kept so that no client sees a change. */
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "apiVersion", "v1");
  json_object_set_string_member(o, "kind", "Status");
  json_object_set_string_member(o, "status", "Failure");
  json_object_set_string_member(o, "reason", reason);
  json_object_set_string_member(o, "message", message);
  json_object_set_int_member(o, "code", code);
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

void vmlet_api_set_not_found(GError **error, const char *resource, const char *ns,
                             const char *name)
{
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "%s \"%s\" not found in namespace \"%s\"",
              resource, name, ns);
}
