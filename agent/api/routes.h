/* The API's route table and its matcher, as Cloud Hypervisor's HTTP_ROUTES: one row per
 * {method, resource, subresource} and its handler. The matcher is pure (strings in, a row
 * or a GError out; no libsoup), so tests/unit/test-routes.c drives it directly.
 *
 *   /healthz                                       any method
 *   /node[/SUB]                                    the node; SUB: drain, uncordon (POST)
 *   PREFIX/RESOURCE                                every namespace (GET, ?watch=true)
 *   PREFIX/namespaces/NS/RESOURCE                  a namespace's collection
 *   PREFIX/namespaces/NS/RESOURCE/NAME[/SUB]       one object, or a subresource of it
 *
 * NS and NAME are DNS-1123 labels. A path no row has is NotFound "unknown path"; a path a
 * row has with another method is MethodNotAllowed, listing the resource's methods in table
 * order ("use GET, PUT, PATCH or DELETE"). */
#pragma once

#include <glib.h>

#define VMLET_API_PREFIX "/apis/virtualization.deckhouse.io/v1alpha2"

typedef enum {
  VMLET_SCOPE_ROOT,       /* /RESOURCE, outside the API group */
  VMLET_SCOPE_CLUSTER,    /* PREFIX/RESOURCE */
  VMLET_SCOPE_COLLECTION, /* PREFIX/namespaces/NS/RESOURCE */
  VMLET_SCOPE_OBJECT,     /* PREFIX/namespaces/NS/RESOURCE/NAME[/SUBRESOURCE] */
} VmletRouteScope;

/* One request being answered (respond.h); handlers get it, the matcher never does. */
typedef struct _VmletCall VmletCall;
typedef void (*VmletRouteHandler)(VmletCall *call);

typedef struct {
  const char *method; /* NULL: any */
  VmletRouteScope scope;
  const char *resource;
  const char *subresource; /* NULL: the object itself */
  gboolean watch;          /* only for ?watch=true, before the row without it */
  VmletRouteHandler handler;
} VmletRoute;

/* What a matched path names. */
typedef struct {
  char *ns;   /* NULL: every namespace */
  char *name; /* NULL: a collection */
} VmletRouteArgs;

void vmlet_route_args_clear(VmletRouteArgs *args);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmletRouteArgs, vmlet_route_args_clear)

/* The table, for tests. */
const VmletRoute *vmlet_routes(gsize *n_routes);
/* ?watch=VALUE asks for a watch: "true" or "1", as kubectl sends it. */
gboolean vmlet_route_wants_watch(const char *value);
/* The row for method on path (args filled), or NULL with VMLET_ERROR_NOT_FOUND or
 * VMLET_ERROR_UNSUPPORTED. */
const VmletRoute *vmlet_route_match(const char *method, const char *path, gboolean watch,
                                    VmletRouteArgs *args, GError **error);
