/* The Kubernetes object header shared by every kind vmlet reads: apiVersion, kind, metadata. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"
#include "jsonval.h"

#define VMLET_API_GROUP "virtualization.deckhouse.io"
#define VMLET_DEFAULT_NAMESPACE "default"

typedef struct {
  char *name;
  char *namespace;    /* "default" when absent */
  char *uid;          /* NULL when absent */
  GHashTable *labels; /* never NULL */
  GHashTable *annotations;
} VmletMeta;

/* Checks apiVersion against the NULL-terminated accepted list and kind, and fills meta.
 * Status, managedFields and other server-side fields of `kubectl get -o json` output are
 * accepted and ignored. Returns FALSE with errors in d when the header is unusable. */
gboolean vmlet_meta_parse(VmletDiag *d, JsonObject *root, const char *kind,
                          const char *const *api_versions, VmletMeta *meta);
void vmlet_meta_clear(VmletMeta *meta);

/* RFC 1123 label: 1-63 of [a-z0-9-], starting and ending alphanumeric. */
gboolean vmlet_is_dns1123_label(const char *s);

/* Reads a name-valued member and checks it is a DNS-1123 label. */
gboolean vmlet_get_name(VmletDiag *d, JsonObject *obj, const char *path, const char *member,
                        int flags, const char **out);

/* A Kubernetes timestamp (RFC 3339, seconds, UTC: "2026-12-01T22:47:54Z") of a wall-clock
 * time in microseconds. */
char *vmlet_timestamp(gint64 wall_us);

/* Appends a Kubernetes condition {type, status: "True"/"False", reason, message} to conds;
 * reason and message may be NULL (then absent). The one builder for VMs and attachments. */
void vmlet_condition_add(JsonArray *conds, const char *type, gboolean ok, const char *reason,
                         const char *message);

/* RFC 1123 subdomain (a node name): dot-separated labels, at most 253 bytes. */
gboolean vmlet_is_dns1123_subdomain(const char *s);
