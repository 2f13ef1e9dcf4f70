/* Loading drop-in documents: one object, or a `kind: List` of them (kubectl's -o json
 * output for several objects), dispatched by kind. */
#pragma once

#include <glib.h>

#include "attachment.h"
#include "blockobj.h"
#include "secret.h"
#include "vmclass.h"
#include "vmspec.h"

typedef enum {
  VMLET_KIND_VIRTUAL_MACHINE,
  VMLET_KIND_VIRTUAL_DISK,
  VMLET_KIND_VIRTUAL_IMAGE,
  VMLET_KIND_CLUSTER_VIRTUAL_IMAGE,
  VMLET_KIND_VIRTUAL_MACHINE_CLASS,
  VMLET_KIND_SECRET,
  VMLET_KIND_VMBDA, /* VirtualMachineBlockDeviceAttachment */
} VmletKind;

typedef struct {
  VmletKind kind;
  union {
    VmSpec *vm;
    VmletBlockObject *block;
    VmClass *klass;
    VmletSecret *secret;
    VmletAttachment *attachment;
  };
} VmletObject;

#define VMLET_MAX_LIST_ITEMS 256

void vmlet_object_free(VmletObject *obj);
/* The object's apiVersion/kind/metadata, whatever its kind. */
const VmletMeta *vmlet_object_meta(const VmletObject *obj);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletObject, vmlet_object_free)

/* Parses a document. On success returns the objects (VmletObject *, owned by the array);
 * warnings ("source: path: text") are appended to warnings when it is not NULL. On failure
 * every problem is in error, one per line, each naming source and JSON path. */
GPtrArray *vmlet_objects_parse(const char *source, const char *data, gsize len,
                               GPtrArray *warnings, GError **error);
/* Loads a drop-in file. A Secret is accepted only from a file that passes
 * vmlet_secret_check_stat, in whatever directory (secrets.d, or a List in vms.d): the check
 * is made on the opened descriptor before anything is read, and a Secret in a file that
 * fails it comes back refused (VmletSecret.refused, its data not decoded), so the VMs that
 * need it say why. secrets_dir: the file is in secrets.d, so one that fails the check and
 * does not parse either is reported with the refusal first. */
GPtrArray *vmlet_objects_load_file(const char *path, gboolean secrets_dir, GPtrArray *warnings,
                                   GError **error);

/* The objects a VM refers to, by kind/namespace/name. */
typedef struct {
  GHashTable *classes; /* name -> VmClass * */
  GHashTable *blocks;  /* "Kind/namespace/name" -> VmletBlockObject * */
  GHashTable *secrets; /* "namespace/name" -> VmletSecret * */
  GHashTable *refused_secrets; /* "namespace/name" -> why its drop-in was refused */
  GHashTable *attachments; /* "namespace/name" -> VmletAttachment * */
  GHashTable *attachment_sources; /* "namespace/name" -> the drop-in file it came from */
  /* Drop-ins of attachments.d that do not load, known by file name ([NS.]NAME.json):
   * "namespace/name" -> every problem, so the attachment is listed as Failed with them. */
  GHashTable *refused_attachments;
} VmletInventory;

VmletInventory *vmlet_inventory_new(void);
void vmlet_inventory_free(VmletInventory *inv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletInventory, vmlet_inventory_free)

/* Adds a class, disk, image, Secret or attachment (VMs are ignored); a later object
 * replaces an earlier one. A refused Secret is remembered as refused (vmlet_inventory_secret
 * says why). */
void vmlet_inventory_add(VmletInventory *inv, const VmletObject *obj);
/* Loads every *.json in dir (sorted). A file that fails is reported in problems and
 * skipped: one broken drop-in never hides the others. A missing dir is not a problem. In a
 * directory named secrets.d a file that fails is also remembered as a refused Secret named
 * after the file, since its metadata could not be read. */
void vmlet_inventory_load_dir(VmletInventory *inv, const char *dir, GPtrArray *problems,
                              GPtrArray *warnings);
VmClass *vmlet_inventory_class(VmletInventory *inv, const char *name);
/* A Secret, or NULL with *why saying whether it is missing or was refused (mode, type...). */
VmletSecret *vmlet_inventory_secret(VmletInventory *inv, const char *namespace, const char *name,
                                    char **why);
/* Attachments sorted by namespace and name; the array holds references. */
GPtrArray *vmlet_inventory_attachments(VmletInventory *inv);
VmletBlockObject *vmlet_inventory_block(VmletInventory *inv, VmBlockKind kind,
                                        const char *namespace, const char *name);
