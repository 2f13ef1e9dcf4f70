#include "routes.h"

#include <string.h>

#include "errors.h"
#include "handlers.h"
#include "meta.h"
#include "vmlet-error.h"

#define ROOT VMLET_SCOPE_ROOT
#define CLUSTER VMLET_SCOPE_CLUSTER
#define COLLECTION VMLET_SCOPE_COLLECTION
#define OBJECT VMLET_SCOPE_OBJECT
#define VMS VMLET_RESOURCE_VMS
#define VMBDAS VMLET_RESOURCE_VMBDAS
#define OPS VMLET_RESOURCE_OPERATIONS

/* Row order is the order of the methods in a 405's text. A watch row is taken over its
 * plain twin only for ?watch=true, wherever it stands. */
static const VmletRoute routes[] = {
    /* Any method, as before the table: a liveness probe's method was never checked. */
    {NULL, ROOT, "healthz", NULL, FALSE, vmlet_handle_healthz},

    /* Maintenance (handlers-node.c): the node, drain, uncordon. */
    {"GET", ROOT, "node", NULL, FALSE, vmlet_handle_get_node},
    {"POST", ROOT, "node", "drain", FALSE, vmlet_handle_drain_node},
    {"POST", ROOT, "node", "uncordon", FALSE, vmlet_handle_uncordon_node},

    {"GET", CLUSTER, VMS, NULL, TRUE, vmlet_handle_watch_vms},
    {"GET", CLUSTER, VMS, NULL, FALSE, vmlet_handle_list_vms},
    {"GET", COLLECTION, VMS, NULL, TRUE, vmlet_handle_watch_vms},
    {"GET", COLLECTION, VMS, NULL, FALSE, vmlet_handle_list_vms},
    {"GET", OBJECT, VMS, NULL, TRUE, vmlet_handle_watch_one},
    {"GET", OBJECT, VMS, NULL, FALSE, vmlet_handle_get_vm},
    {"PUT", OBJECT, VMS, NULL, FALSE, vmlet_handle_put_vm},
    {"PATCH", OBJECT, VMS, NULL, FALSE, vmlet_handle_patch_vm},
    {"DELETE", OBJECT, VMS, NULL, FALSE, vmlet_handle_delete_vm},
    {"PUT", OBJECT, VMS, "pause", FALSE, vmlet_handle_pause_vm},
    {"PUT", OBJECT, VMS, "unpause", FALSE, vmlet_handle_unpause_vm},

    {"GET", COLLECTION, OPS, NULL, FALSE, vmlet_handle_list_operations},
    {"POST", COLLECTION, OPS, NULL, FALSE, vmlet_handle_create_operation},
    {"GET", OBJECT, OPS, NULL, FALSE, vmlet_handle_get_operation},
    {"DELETE", OBJECT, OPS, NULL, FALSE, vmlet_handle_delete_operation},

    {"GET", CLUSTER, VMBDAS, NULL, TRUE, vmlet_handle_watch_attachments},
    {"GET", CLUSTER, VMBDAS, NULL, FALSE, vmlet_handle_list_attachments},
    {"GET", COLLECTION, VMBDAS, NULL, TRUE, vmlet_handle_watch_attachments},
    {"GET", COLLECTION, VMBDAS, NULL, FALSE, vmlet_handle_list_attachments},
    {"GET", OBJECT, VMBDAS, NULL, TRUE, vmlet_handle_watch_one},
    {"GET", OBJECT, VMBDAS, NULL, FALSE, vmlet_handle_get_attachment},
    {"PUT", OBJECT, VMBDAS, NULL, FALSE, vmlet_handle_put_attachment},
    {"DELETE", OBJECT, VMBDAS, NULL, FALSE, vmlet_handle_delete_attachment},
};

/* Where a path points, whatever the method. */
typedef struct {
  VmletRouteScope scope;
  const char *resource;
  const char *subresource;
} Shape;

const VmletRoute *vmlet_routes(gsize *n_routes)
{
  *n_routes = G_N_ELEMENTS(routes);
  return routes;
}

void vmlet_route_args_clear(VmletRouteArgs *args)
{
  g_clear_pointer(&args->ns, g_free);
  g_clear_pointer(&args->name, g_free);
}

gboolean vmlet_route_wants_watch(const char *value)
{
  return value && (g_str_equal(value, "true") || g_str_equal(value, "1"));
}

/* FALSE for a path no row could have. Shape points into path or *parts. */
static gboolean parse_path(const char *path, GStrv *parts, Shape *shape, VmletRouteArgs *args)
{
  *shape = (Shape){ROOT, NULL, NULL};
  if (!g_str_has_prefix(path, VMLET_API_PREFIX "/")) {
    /* /RESOURCE[/SUB]: the node and its actions, outside the API group as a Node is. */
    if (path[0] != '/')
      return FALSE;
    *parts = g_strsplit(path + 1, "/", -1);
    guint n = g_strv_length(*parts);
    if (n < 1 || n > 2 || !**parts || (n == 2 && !(*parts)[1][0]))
      return FALSE;
    shape->resource = (*parts)[0];
    shape->subresource = n == 2 ? (*parts)[1] : NULL;
    return TRUE;
  }
  *parts = g_strsplit(path + strlen(VMLET_API_PREFIX "/"), "/", -1);
  GStrv p = *parts;
  guint n = g_strv_length(p);
  if (n == 1) {
    shape->scope = CLUSTER;
    shape->resource = p[0];
    return TRUE;
  }
  /* namespaces/NS/RESOURCE[/NAME[/SUBRESOURCE]]; a name that could not exist names nothing. */
  if (n < 3 || n > 5 || !g_str_equal(p[0], "namespaces") || !vmlet_is_dns1123_label(p[1]) ||
      (n > 3 && !vmlet_is_dns1123_label(p[3])))
    return FALSE;
  shape->scope = n == 3 ? COLLECTION : OBJECT;
  shape->resource = p[2];
  shape->subresource = n == 5 ? p[4] : NULL;
  args->ns = g_strdup(p[1]);
  args->name = n > 3 ? g_strdup(p[3]) : NULL;
  return TRUE;
}

static gboolean same_shape(const VmletRoute *r, const Shape *s)
{
  return r->scope == s->scope && g_str_equal(r->resource, s->resource) &&
         g_strcmp0(r->subresource, s->subresource) == 0;
}

/* A namespace's collection and its objects are one resource to a client (kubectl's "use
 * GET, PUT, PATCH or DELETE" for virtualmachines); the cluster-wide list and each
 * subresource are resources of their own. */
static gboolean same_resource(const VmletRoute *r, const Shape *s)
{
  return g_str_equal(r->resource, s->resource) &&
         g_strcmp0(r->subresource, s->subresource) == 0 &&
         (r->scope == CLUSTER) == (s->scope == CLUSTER) &&
         (r->scope == ROOT) == (s->scope == ROOT);
}

static const VmletRoute *find(const Shape *s, const char *method, gboolean watch)
{
  for (gsize i = 0; i < G_N_ELEMENTS(routes); i++) {
    const VmletRoute *r = &routes[i];
    if (same_shape(r, s) && r->watch == watch && (!r->method || g_str_equal(r->method, method)))
      return r;
  }
  return NULL;
}

/* "use GET", "use GET or POST", "use GET, PUT or DELETE": the resource's methods in table
 * order. */
static char *allowed_methods(const Shape *s)
{
  g_autoptr(GPtrArray) methods = g_ptr_array_new();
  for (gsize i = 0; i < G_N_ELEMENTS(routes); i++) {
    const VmletRoute *r = &routes[i];
    if (r->method && same_resource(r, s) &&
        !g_ptr_array_find_with_equal_func(methods, r->method, g_str_equal, NULL))
      g_ptr_array_add(methods, (gpointer)r->method);
  }
  GString *text = g_string_new("use ");
  for (guint i = 0; i < methods->len; i++) {
    if (i > 0)
      g_string_append(text, i + 1 == methods->len ? " or " : ", ");
    g_string_append(text, methods->pdata[i]);
  }
  return g_string_free(text, FALSE);
}

static gboolean path_exists(const Shape *s)
{
  for (gsize i = 0; i < G_N_ELEMENTS(routes); i++)
    if (same_shape(&routes[i], s))
      return TRUE;
  return FALSE;
}

const VmletRoute *vmlet_route_match(const char *method, const char *path, gboolean watch,
                                    VmletRouteArgs *args, GError **error)
{
  g_auto(GStrv) parts = NULL;
  Shape s;
  vmlet_route_args_clear(args);
  if (parse_path(path, &parts, &s, args)) {
    /* A watch row when watching, else the plain one: a PUT with ?watch=true is a PUT. */
    const VmletRoute *r = watch ? find(&s, method, TRUE) : NULL;
    if (!r)
      r = find(&s, method, FALSE);
    if (r)
      return r;
    if (path_exists(&s)) {
      g_autofree char *allowed = allowed_methods(&s);
      g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_UNSUPPORTED, allowed);
      vmlet_route_args_clear(args);
      return NULL;
    }
  }
  vmlet_route_args_clear(args);
  g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND, "unknown path");
  return NULL;
}
