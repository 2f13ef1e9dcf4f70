/* One request being answered over libsoup, and the ways to answer it. Every answer but a
 * watch stream closes its connection (see vmlet_respond_json). */
#pragma once

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "manager.h"
#include "routes.h"

struct _VmletWatchHub;

/* What a route's handler gets: the node, the request, and what its path named. */
struct _VmletCall {
  VmletManager *mgr;
  struct _VmletWatchHub *watch;
  SoupServerMessage *msg;
  const VmletRouteArgs *args;
};

/* Compact JSON and a newline, with Connection: close. */
void vmlet_respond_json(SoupServerMessage *msg, guint status, JsonNode *node);
/* A Kubernetes Status object (errors.h). */
void vmlet_respond_status(SoupServerMessage *msg, guint code, const char *reason,
                          const char *message);
/* error as its Status: the one mapping of vmlet_api_error_status. */
void vmlet_respond_error(SoupServerMessage *msg, const GError *error);
/* An action's outcome: result (taken; may be NULL only with error set) with status, or
 * error. */
void vmlet_respond_result(SoupServerMessage *msg, guint status, JsonNode *result,
                          const GError *error);
/* {"apiVersion": "v1", "kind": "List", "items": items} (taken). */
void vmlet_respond_list(SoupServerMessage *msg, JsonArray *items);

/* Refuses, from the request's headers alone, a body over max bytes (413) or of no stated
 * length (411): libsoup reads a body whole before any handler, so a bound checked there
 * would come after the memory was spent. */
void vmlet_respond_bound_bodies(SoupServer *server, goffset max);

/* The request body (bounded by the server before any route runs). */
GBytes *vmlet_call_body(VmletCall *call);
