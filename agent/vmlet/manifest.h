/* Manifests for `vmlet apply -f` and `vmlet create -f`: a file (YAML or JSON, one object
 * or a List) read, every object checked before anything is sent, then each sent to vmletd
 * by its kind and the answer printed as kubectl prints it. */
#pragma once

#include "client.h"
#include "objects.h"
#include "resource.h"

typedef struct {
  char *source;                   /* "FILE", or "FILE: items[N]" in a List: for messages */
  const VmletResource *resource;  /* what the API serves it as */
  JsonNode *object;               /* as sent: metadata.namespace filled in */
  char *namespace;
  char *name;                     /* NULL for an operation that asks for generateName */
} VmletManifestItem;

void vmlet_manifest_item_free(VmletManifestItem *item);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletManifestItem, vmlet_manifest_item_free)

/* Reads file ("-": stdin) and checks each object: a kind the API serves (an unknown kind,
 * or one only drop-ins hold, is named with the file), and for VirtualMachines and
 * attachments what a drop-in must be (vmletd checks an operation). An object without
 * metadata.namespace is put in ns. Returns the items (VmletManifestItem *), or NULL with
 * every problem of the file in error, one per line. */
GPtrArray *vmlet_manifest_load(const char *file, const char *ns, GError **error);

typedef enum {
  VMLET_SEND_APPLY,  /* create or replace; an operation is created */
  VMLET_SEND_CREATE, /* an object that exists already is an error (kubectl create) */
} VmletSendMode;

/* Sends one item and prints kubectl's line ("... created", "... configured") or the
 * problem, once; returns the exit code. */
int vmlet_manifest_send(const char *cmd, VmletClient *c, const VmletManifestItem *item,
                        VmletSendMode mode);
