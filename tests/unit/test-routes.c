/* The API's route table and matcher (agent/api/routes.c), and the one mapping from errors
 * to Status answers (errors.c): pure, no server. */
#include "errors.h"
#include "handlers.h"
#include "routes.h"
#include "vmlet-error.h"

#define P VMLET_API_PREFIX
#define NS P "/namespaces/default"

typedef struct {
  const char *method, *path;
  gboolean watch;
  VmletRouteHandler handler; /* NULL: refused with code and message */
  const char *ns, *name;
  int code;
  const char *message;
} Case;

#define OK(m, p, w, h, ns, name) {m, p, w, h, ns, name, 0, NULL}
#define NOT_FOUND(m, p) {m, p, FALSE, NULL, NULL, NULL, VMLET_ERROR_NOT_FOUND, "unknown path"}
#define NOT_ALLOWED(m, p, text) {m, p, FALSE, NULL, NULL, NULL, VMLET_ERROR_UNSUPPORTED, text}

/* The texts vmletd answered before the table, byte for byte: clients and the CLI show them. */
#define VM_METHODS "use GET, PUT, PATCH or DELETE"
#define VMBDA_METHODS "use GET, PUT or DELETE"
#define VM_405(m, p) NOT_ALLOWED(m, p, VM_METHODS)
#define VMBDA_405(m, p) NOT_ALLOWED(m, p, VMBDA_METHODS)

static const Case cases[] = {
    /* Every row of the table. */
    OK("GET", "/healthz", FALSE, vmlet_handle_healthz, NULL, NULL),
    OK("POST", "/healthz", FALSE, vmlet_handle_healthz, NULL, NULL),
    OK("GET", "/node", FALSE, vmlet_handle_get_node, NULL, NULL),
    OK("POST", "/node/drain", FALSE, vmlet_handle_drain_node, NULL, NULL),
    OK("POST", "/node/uncordon", FALSE, vmlet_handle_uncordon_node, NULL, NULL),
    OK("GET", P "/virtualmachines", FALSE, vmlet_handle_list_vms, NULL, NULL),
    OK("GET", P "/virtualmachines", TRUE, vmlet_handle_watch_vms, NULL, NULL),
    OK("GET", NS "/virtualmachines", FALSE, vmlet_handle_list_vms, "default", NULL),
    OK("GET", NS "/virtualmachines", TRUE, vmlet_handle_watch_vms, "default", NULL),
    OK("GET", NS "/virtualmachines/linux-vm", FALSE, vmlet_handle_get_vm, "default", "linux-vm"),
    OK("GET", NS "/virtualmachines/linux-vm", TRUE, vmlet_handle_watch_one, "default",
       "linux-vm"),
    OK("PUT", NS "/virtualmachines/linux-vm", FALSE, vmlet_handle_put_vm, "default", "linux-vm"),
    OK("PATCH", NS "/virtualmachines/a", FALSE, vmlet_handle_patch_vm, "default", "a"),
    OK("DELETE", NS "/virtualmachines/a", FALSE, vmlet_handle_delete_vm, "default", "a"),
    OK("PUT", NS "/virtualmachines/a/pause", FALSE, vmlet_handle_pause_vm, "default", "a"),
    OK("PUT", NS "/virtualmachines/a/unpause", FALSE, vmlet_handle_unpause_vm, "default", "a"),
    OK("GET", P "/namespaces/prod-1/virtualmachineoperations", FALSE,
       vmlet_handle_list_operations, "prod-1", NULL),
    OK("POST", NS "/virtualmachineoperations", FALSE, vmlet_handle_create_operation, "default",
       NULL),
    OK("GET", NS "/virtualmachineoperations/evict-a-1", FALSE, vmlet_handle_get_operation,
       "default", "evict-a-1"),
    OK("DELETE", NS "/virtualmachineoperations/evict-a-1", FALSE, vmlet_handle_delete_operation,
       "default", "evict-a-1"),
    OK("GET", P "/virtualmachineblockdeviceattachments", FALSE, vmlet_handle_list_attachments,
       NULL, NULL),
    OK("GET", P "/virtualmachineblockdeviceattachments", TRUE, vmlet_handle_watch_attachments,
       NULL, NULL),
    OK("GET", NS "/virtualmachineblockdeviceattachments", FALSE, vmlet_handle_list_attachments,
       "default", NULL),
    OK("GET", NS "/virtualmachineblockdeviceattachments", TRUE, vmlet_handle_watch_attachments,
       "default", NULL),
    OK("GET", NS "/virtualmachineblockdeviceattachments/d", FALSE, vmlet_handle_get_attachment,
       "default", "d"),
    OK("GET", NS "/virtualmachineblockdeviceattachments/d", TRUE, vmlet_handle_watch_one,
       "default", "d"),
    OK("PUT", NS "/virtualmachineblockdeviceattachments/d", FALSE, vmlet_handle_put_attachment,
       "default", "d"),
    OK("DELETE", NS "/virtualmachineblockdeviceattachments/d", FALSE,
       vmlet_handle_delete_attachment, "default", "d"),
    /* ?watch=true only changes a GET, and only where a watch row is. */
    OK("PUT", NS "/virtualmachines/a", TRUE, vmlet_handle_put_vm, "default", "a"),
    OK("GET", NS "/virtualmachineoperations", TRUE, vmlet_handle_list_operations, "default",
       NULL),
    OK("PUT", NS "/virtualmachines/a/pause", TRUE, vmlet_handle_pause_vm, "default", "a"),

    /* Paths no row has. */
    NOT_FOUND("GET", "/"),
    NOT_FOUND("GET", ""),
    NOT_FOUND("GET", "/foo"),
    NOT_FOUND("GET", "/healthz/x"),
    NOT_FOUND("POST", "/node/cordon"),
    NOT_FOUND("POST", "/node/drain/x"),
    NOT_FOUND("POST", "/node/"),
    NOT_FOUND("GET", "//node"),
    NOT_FOUND("GET", "/apis"),
    NOT_FOUND("GET", P),
    NOT_FOUND("GET", P "/"),
    NOT_FOUND("GET", P "/healthz"),
    NOT_FOUND("GET", P "/virtualmachineoperations"),
    NOT_FOUND("GET", P "/virtualmachines/a"),
    NOT_FOUND("GET", P "/virtualmachines/"),
    NOT_FOUND("GET", P "/namespaces"),
    NOT_FOUND("GET", NS),
    NOT_FOUND("GET", NS "/"),
    NOT_FOUND("GET", NS "/foo"),
    NOT_FOUND("PUT", NS "/foo/a"),
    NOT_FOUND("GET", NS "/virtualmachines/a/status"),
    NOT_FOUND("PUT", NS "/virtualmachines/a/"),
    NOT_FOUND("PUT", NS "/virtualmachineblockdeviceattachments/d/pause"),
    NOT_FOUND("GET", "/apis/virtualization.deckhouse.io/v1alpha1/virtualmachines"),
    NOT_FOUND("GET", "/api/v1/namespaces/default/virtualmachines"),
    NOT_FOUND("GET", P "/nAmespaces/default/virtualmachines"),
    NOT_FOUND("GET", P "/namespaces/default/VirtualMachines"),
    /* Names that cannot exist (DNS-1123 labels), namespace or object, whatever the method. */
    NOT_FOUND("GET", P "/namespaces/Default/virtualmachines"),
    NOT_FOUND("GET", P "/namespaces//virtualmachines"),
    NOT_FOUND("GET", P "/namespaces/-a/virtualmachines"),
    NOT_FOUND("GET", NS "/virtualmachines/Linux"),
    NOT_FOUND("GET", NS "/virtualmachines/linux_vm"),
    NOT_FOUND("GET", NS "/virtualmachines/a-"),
    NOT_FOUND("GET", NS "/virtualmachines/-a"),
    NOT_FOUND("GET", NS "/virtualmachines/a.b"),
    NOT_FOUND("GET", NS "/virtualmachines/a%2Fb"),
    NOT_FOUND("POST", NS "/virtualmachines/Bad"),
    NOT_FOUND("PUT", NS "/virtualmachines/Bad/pause"),
    NOT_FOUND("GET", NS "/virtualmachines/"
                     "a123456789012345678901234567890123456789012345678901234567890123"),
    /* Too many segments. */
    NOT_FOUND("PUT", NS "/virtualmachines/a/pause/x"),
    NOT_FOUND("PUT", NS "/virtualmachines/a/pause/"),
    NOT_FOUND("GET", NS "/virtualmachines/a/pause/x/y/z"),

    /* A path a row has, another method: the resource's methods, in table order. */
    VM_405("POST", NS "/virtualmachines"),
    VM_405("PUT", NS "/virtualmachines"),
    VM_405("DELETE", NS "/virtualmachines"),
    VM_405("PATCH", NS "/virtualmachines"),
    VM_405("POST", NS "/virtualmachines/a"),
    VM_405("HEAD", NS "/virtualmachines/a"),
    VMBDA_405("POST", NS "/virtualmachineblockdeviceattachments"),
    VMBDA_405("PUT", NS "/virtualmachineblockdeviceattachments"),
    VMBDA_405("DELETE", NS "/virtualmachineblockdeviceattachments"),
    VMBDA_405("PATCH", NS "/virtualmachineblockdeviceattachments/d"),
    VMBDA_405("POST", NS "/virtualmachineblockdeviceattachments/d"),
    NOT_ALLOWED("DELETE", NS "/virtualmachineoperations", "use GET, POST or DELETE"),
    NOT_ALLOWED("PUT", NS "/virtualmachineoperations", "use GET, POST or DELETE"),
    NOT_ALLOWED("PUT", P "/virtualmachines", "use GET"),
    NOT_ALLOWED("DELETE", P "/virtualmachineblockdeviceattachments", "use GET"),
    NOT_ALLOWED("GET", NS "/virtualmachines/a/pause", "use PUT"),
    NOT_ALLOWED("POST", NS "/virtualmachines/a/unpause", "use PUT"),
    NOT_ALLOWED("POST", "/node", "use GET"),
    NOT_ALLOWED("GET", "/node/drain", "use POST"),
};

static void test_match(void)
{
  gsize n_routes = 0;
  const VmletRoute *routes = vmlet_routes(&n_routes);
  g_autofree gboolean *hit = g_new0(gboolean, n_routes);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    const Case *c = &cases[i];
    g_test_message("%s %s%s", c->method, c->path, c->watch ? "?watch=true" : "");
    g_autoptr(GError) error = NULL;
    g_auto(VmletRouteArgs) args = {NULL, NULL};
    const VmletRoute *r = vmlet_route_match(c->method, c->path, c->watch, &args, &error);
    if (!c->handler) {
      g_assert_null(r);
      g_assert_error(error, VMLET_ERROR, c->code);
      g_assert_cmpstr(error->message, ==, c->message);
      g_assert_null(args.ns);
      g_assert_null(args.name);
      continue;
    }
    g_assert_no_error(error);
    g_assert_nonnull(r);
    g_assert_true(r->handler == c->handler);
    g_assert_cmpstr(args.ns, ==, c->ns);
    g_assert_cmpstr(args.name, ==, c->name);
    hit[r - routes] = TRUE;
  }
  for (gsize i = 0; i < n_routes; i++) {
    g_test_message("row %" G_GSIZE_FORMAT ": %s %s/%s", i, routes[i].method,
                   routes[i].resource, routes[i].subresource ? routes[i].subresource : "");
    g_assert_true(hit[i]);
  }
}

static void test_watch_value(void)
{
  g_assert_true(vmlet_route_wants_watch("true"));
  g_assert_true(vmlet_route_wants_watch("1"));
  g_assert_false(vmlet_route_wants_watch(NULL));
  g_assert_false(vmlet_route_wants_watch(""));
  g_assert_false(vmlet_route_wants_watch("false"));
  g_assert_false(vmlet_route_wants_watch("0"));
  g_assert_false(vmlet_route_wants_watch("True"));
}

/* Every code the domain has, and a foreign error. */
static void test_error_status(void)
{
  static const struct {
    int code;
    guint status;
    const char *reason;
  } want[] = {
      {VMLET_ERROR_INVALID, 422, "Invalid"},
      {VMLET_ERROR_NOT_FOUND, 404, "NotFound"},
      {VMLET_ERROR_TOO_LARGE, 413, "RequestEntityTooLarge"},
      {VMLET_ERROR_IO, 500, "InternalError"},
      {VMLET_ERROR_EXISTS, 409, "AlreadyExists"},
      {VMLET_ERROR_CONFLICT, 409, "Conflict"},
      {VMLET_ERROR_FORBIDDEN, 403, "Forbidden"},
      {VMLET_ERROR_MALFORMED, 400, "BadRequest"},
      {VMLET_ERROR_UNSUPPORTED, 405, "MethodNotAllowed"},
      {VMLET_ERROR_UNAVAILABLE, 503, "ServiceUnavailable"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(want); i++) {
    g_autoptr(GError) e = g_error_new_literal(VMLET_ERROR, want[i].code, "x");
    const char *reason = NULL;
    g_assert_cmpuint(vmlet_api_error_status(e, &reason), ==, want[i].status);
    g_assert_cmpstr(reason, ==, want[i].reason);
  }
  g_autoptr(GError) foreign = g_error_new_literal(G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "x");
  const char *reason = NULL;
  g_assert_cmpuint(vmlet_api_error_status(foreign, &reason), ==, 500);
  g_assert_cmpstr(reason, ==, "InternalError");
}

/* The Status body as vmletd has always sent it. */
static void test_status_body(void)
{
  g_autoptr(JsonNode) n = vmlet_api_status_new(404, "NotFound", "unknown path");
  g_autofree char *text = json_to_string(n, FALSE);
  g_assert_cmpstr(text, ==,
                  "{\"apiVersion\":\"v1\",\"kind\":\"Status\",\"status\":\"Failure\","
                  "\"reason\":\"NotFound\",\"message\":\"unknown path\",\"code\":404}");
  g_autoptr(GError) error = NULL;
  vmlet_api_set_not_found(&error, VMLET_RESOURCE_VMS, "default", "a");
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
  g_assert_cmpstr(error->message, ==, "virtualmachines \"a\" not found in namespace \"default\"");
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/routes/match", test_match);
  g_test_add_func("/routes/watch-value", test_watch_value);
  g_test_add_func("/routes/error-status", test_error_status);
  g_test_add_func("/routes/status-body", test_status_body);
  return g_test_run();
}
