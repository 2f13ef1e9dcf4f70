/* Kubernetes Secrets as node-local drop-ins (<config-dir>/secrets.d), for provisioning.
 *
 * A Secret's values never appear in logs, status or API output; errors name the Secret and
 * the key, never a value. A file that holds a Secret must be owned by root (or the daemon's
 * user) and readable by nobody else, or its Secrets are refused, in whatever directory the
 * file is (objects.c checks every file before reading it). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <sys/stat.h>

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
  char *refused;    /* why its file was refused; then only meta is set and data is empty */
} VmletSecret;

/* data (base64) and stringData (plain, wins on conflict), as Kubernetes merges them. */
VmletSecret *vmlet_secret_parse(JsonObject *root, VmletDiag *d);
VmletSecret *vmlet_secret_ref(VmletSecret *secret);
void vmlet_secret_unref(VmletSecret *secret);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletSecret, vmlet_secret_unref)

/* A Secret from a file that failed vmlet_secret_check_stat: only apiVersion, kind and
 * metadata are read (its data are not even decoded, so a private value is never looked at
 * and the refusal is the problem reported); why is kept in refused. */
VmletSecret *vmlet_secret_parse_refused(JsonObject *root, VmletDiag *d, const char *why);

/* Refuses a file (its stat, taken from the descriptor that will be read) that others than
 * its owner may read or write, or that root (or this process' user) does not own. path is
 * for the message. */
gboolean vmlet_secret_check_stat(const char *path, const struct stat *st, GError **error);
