/* Where the destination of a migration puts a disk the source announces. The source is a
 * peer, and a peer is untrusted input: it names VMs and disks, never paths on this node.
 * So a path from the manifest it sends (spec.local.path) is kept only when the source has
 * proven the directory is storage both nodes share (its marker token beside the disk);
 * otherwise the disk goes where this node would put an object without a path, and the
 * manifest this node keeps (journal, then drop-in) says so, so that no restart or reload
 * brings the peer's path back. */
#include "vm-migrate.h"

#include <string.h>

#include "jsonval.h"
#include "mig-error.h"
#include "objects.h"

static const VmletKind object_kinds[] = {
    [VM_BLOCK_VIRTUAL_DISK] = VMLET_KIND_VIRTUAL_DISK,
    [VM_BLOCK_VIRTUAL_IMAGE] = VMLET_KIND_VIRTUAL_IMAGE,
    [VM_BLOCK_CLUSTER_VIRTUAL_IMAGE] = VMLET_KIND_CLUSTER_VIRTUAL_IMAGE,
};

/* The one object of the announced kind in text, or NULL with error set. */
static VmletBlockObject *parse_one(const char *text, VmBlockKind kind, const char *name,
                                   GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("the source's disk", text, strlen(text),
                                                  NULL, &local);
  VmletObject *o = objs && objs->len == 1 ? objs->pdata[0] : NULL;
  if (!o || o->kind != object_kinds[kind]) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID, "%s \"%s\": %s",
                vm_block_kind_name(kind), name,
                local ? local->message : "the manifest is not one object of that kind");
    return NULL;
  }
  return vmlet_block_object_ref(o->block);
}

/* The node knows the object from now on: the incoming VM's plan finds it there. */
static VmletBlockObject *learn(VmletInventory *inv, VmletBlockObject *obj)
{
  VmletObject o = {.kind = object_kinds[obj->kind], .block = obj};
  vmlet_inventory_add(inv, &o);
  return obj;
}

VmletBlockObject *vm_mig_place(VmletInventory *inv, VmBlockKind kind, const char *ns,
                               const char *name, JsonNode *manifest, const char *id,
                               const char *token, JsonNode **keep, char **note,
                               GError **error)
{
  *keep = NULL;
  VmletBlockObject *own = vmlet_inventory_block(inv, kind, ns, name);
  if (own)
    return vmlet_block_object_ref(own);
  if (!manifest || !JSON_NODE_HOLDS_OBJECT(manifest)) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID,
                "%s \"%s\": no manifest, and this node has no such object",
                vm_block_kind_name(kind), name);
    return NULL;
  }
  g_autofree char *text = json_to_string(manifest, FALSE);
  g_autoptr(VmletBlockObject) obj = parse_one(text, kind, name, error);
  if (!obj)
    return NULL;
  /* The very object announced: another name or namespace would place (and, once
   * committed, write the drop-in of) an object the VM never asked for. */
  if (!g_str_equal(obj->meta.name, name) ||
      (kind != VM_BLOCK_CLUSTER_VIRTUAL_IMAGE && !g_str_equal(obj->meta.namespace, ns))) {
    g_set_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID,
                "%s \"%s\": the manifest describes %s/%s instead", vm_block_kind_name(kind),
                name, obj->meta.namespace, obj->meta.name);
    return NULL;
  }
  /* Shared storage is proven for a written disk only: the source leaves no marker beside a
   * read-only image, and an image this node does not own is looked for only where this
   * node keeps images. */
  if (!obj->path ||
      (kind == VM_BLOCK_VIRTUAL_DISK && vm_mig_marker_matches(obj->path, id, token))) {
    *keep = json_node_copy(manifest);
    return learn(inv, g_steal_pointer(&obj));
  }
  *note = g_strdup_printf("%s \"%s\": the source's path %s is not storage this node shares "
                          "with it; placed at this node's default location",
                          vm_block_kind_name(kind), name, obj->path);
  /* The path goes; the format stays what it was (it may have come from the path's
   * extension). Parsed again, so the object used is exactly the manifest kept. */
  g_autoptr(JsonNode) edited = json_node_copy(manifest);
  JsonObject *spec = jv_object_at(json_node_get_object(edited), "spec");
  JsonObject *local = jv_object_at(spec, "local");
  json_object_remove_member(local, "path");
  json_object_set_string_member(local, "format", vmlet_image_format_name(obj->format));
  g_free(text);
  text = json_to_string(edited, FALSE);
  VmletBlockObject *placed = parse_one(text, kind, name, error);
  if (!placed)
    return NULL;
  *keep = g_steal_pointer(&edited);
  return learn(inv, placed);
}
