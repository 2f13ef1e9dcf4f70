/* Kubernetes Secrets as node-local drop-ins (<config-dir>/secrets.d), for provisioning.
 *
 * A Secret's values never appear in logs, status or API output; errors name the Secret and
 * the key, never a value. A Secret file must be owned by root (or the daemon's user) and
 * readable by nobody else, or it is refused. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"
#include "meta.h"

#define VMLET_SECRET_TYPE_CLOUD_INIT "provisioning.virtualization.deckhouse.io/cloud-init"
#define VMLET_SECRET_TYPE_SYSPREP "provisioning.virtualization.deckhouse.io/sysprep"
/* Kubernetes' own limit for a Secret. */
#define VMLET_SECRET_MAX_BYTES (1024 * 1024)

typedef struct {
  gint refcount;
  VmletMeta meta;
  char *type;
  GHashTable *data; /* key -> GBytes (decoded) */
} VmletSecret;

/* data (base64) and stringData (plain, wins on conflict), as Kubernetes merges them. */
VmletSecret *vmlet_secret_parse(JsonObject *root, VmletDiag *d);
VmletSecret *vmlet_secret_ref(VmletSecret *secret);
void vmlet_secret_unref(VmletSecret *secret);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletSecret, vmlet_secret_unref)

/* Refuses a secret file that others than its owner may read, or that root (or this process'
 * user) does not own. */
gboolean vmlet_secret_check_file(const char *path, GError **error);
