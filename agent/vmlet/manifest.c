#include "manifest.h"

#include <stdio.h>
#include <string.h>

#include "jsonval.h"
#include "operation.h"
#include "remote.h"
#include "vmlet-error.h"
#include "yamljson.h"

/* Kinds vmlet reads from drop-ins only: named as such, not as unknown. */
static const char *const dropin_kinds[] = {"VirtualDisk", "VirtualImage", "ClusterVirtualImage",
                                           "VirtualMachineClass", "Secret", NULL};

void vmlet_manifest_item_free(VmletManifestItem *item)
{
  if (!item)
    return;
  g_free(item->source);
  g_clear_pointer(&item->object, json_node_unref);
  g_free(item->namespace);
  g_free(item->name);
  g_free(item);
}

/* A copy that can be changed: vmlet_json_parse's nodes are sealed. */
static JsonNode *mutable_copy(JsonNode *node)
{
  g_autofree char *text = json_to_string(node, FALSE);
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, text, -1, NULL))
    return NULL;
  return json_node_copy(json_parser_get_root(parser));
}

/* kubectl's rule: the manifest's namespace, else the command's. */
static void default_namespace(JsonObject *obj, const char *ns)
{
  if (!json_object_has_member(obj, "metadata"))
    json_object_set_object_member(obj, "metadata", json_object_new());
  JsonObject *md = jv_object_at(obj, "metadata");
  if (md && !json_object_has_member(md, "namespace"))
    json_object_set_string_member(md, "namespace", ns);
}

static const VmletResource *served_kind(const char *source, JsonObject *obj, GString *problems)
{
  const char *kind = jv_string_at(obj, "kind");
  const VmletResource *r = vmlet_resource_of_kind(kind);
  if (r)
    return r;
  if (!kind)
    g_string_append_printf(problems, "%s: kind: expected the object's kind\n", source);
  else if (g_strv_contains(dropin_kinds, kind))
    g_string_append_printf(problems, "%s: kind %s is not served by vmletd's API: put it in the "
                           "node's drop-in directories\n", source, kind);
  else
    g_string_append_printf(problems, "%s: unknown kind \"%s\" (vmletd serves VirtualMachine, "
                           "VirtualMachineBlockDeviceAttachment and VirtualMachineOperation)\n",
                           source, kind);
  return NULL;
}

/* Where the item goes: a VM or an attachment checked as its drop-in will be (so mistakes
 * are shown with this file's name before anything is sent); an operation as it asks. */
static gboolean place_item(VmletManifestItem *it, GString *problems)
{
  JsonObject *obj = json_node_get_object(it->object);
  if (it->resource->id == VMLET_RES_VMOP) {
    it->namespace = g_strdup(jv_string_path(obj, "metadata.namespace"));
    it->name = g_strdup(jv_string_path(obj, "metadata.name"));
    if (!it->namespace)
      g_string_append_printf(problems, "%s: metadata.namespace: expected a string\n", it->source);
    return it->namespace != NULL;
  }
  g_autofree char *text = json_to_string(it->object, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse(it->source, text, strlen(text), NULL, &error);
  if (!objs) {
    g_string_append_printf(problems, "%s\n", error->message);
    return FALSE;
  }
  const VmletMeta *meta = vmlet_object_meta(objs->pdata[0]);
  it->namespace = g_strdup(meta->namespace);
  it->name = g_strdup(meta->name);
  return TRUE;
}

static VmletManifestItem *check_item(const char *source, JsonNode *node, const char *ns,
                                     GString *problems)
{
  if (!JSON_NODE_HOLDS_OBJECT(node)) {
    g_autofree char *found = vmlet_json_describe(node);
    g_string_append_printf(problems, "%s: expected an object, found %s\n", source, found);
    return NULL;
  }
  g_autoptr(VmletManifestItem) it = g_new0(VmletManifestItem, 1);
  it->source = g_strdup(source);
  it->resource = served_kind(source, json_node_get_object(node), problems);
  it->object = it->resource ? mutable_copy(node) : NULL;
  if (!it->object)
    return NULL;
  default_namespace(json_node_get_object(it->object), ns);
  return place_item(it, problems) ? g_steal_pointer(&it) : NULL;
}

GPtrArray *vmlet_manifest_load(const char *file, const char *ns, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_manifest(file, &data, &len, error))
    return NULL;
  const char *source = g_str_equal(file, "-") ? "<stdin>" : file;
  g_autoptr(JsonNode) root = vmlet_json_parse(source, data, (gssize)len, error);
  if (!root)
    return NULL;
  JsonObject *ro = json_node_get_object(root);
  gboolean list = g_strcmp0(jv_string_at(ro, "kind"), "List") == 0;
  JsonArray *items = list ? jv_array_at(ro, "items") : NULL;
  if (list && (!items || json_array_get_length(items) > VMLET_MAX_LIST_ITEMS)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s: items: expected a list of at "
                "most %d objects", source, VMLET_MAX_LIST_ITEMS);
    return NULL;
  }
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(
      (GDestroyNotify)vmlet_manifest_item_free);
  g_autoptr(GString) problems = g_string_new(NULL);
  guint n = list ? json_array_get_length(items) : 1;
  for (guint i = 0; i < n; i++) {
    g_autofree char *isrc = list ? g_strdup_printf("%s: items[%u]", source, i) : g_strdup(source);
    VmletManifestItem *it = check_item(isrc, list ? json_array_get_element(items, i) : root, ns,
                                       problems);
    if (it)
      g_ptr_array_add(out, it);
  }
  if (problems->len) {
    g_string_truncate(problems, problems->len - 1);
    g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_INVALID, problems->str);
    return NULL;
  }
  return g_steal_pointer(&out);
}

/* kubectl create: an object that exists is refused, not replaced. 0 when it does not. */
static int refuse_existing(const char *cmd, VmletClient *c, const VmletManifestItem *it,
                           const char *path)
{
  g_autoptr(JsonNode) reply = NULL;
  int rc = remote_get(cmd, c, path, &reply);
  if (rc || !reply)
    return rc;
  fprintf(stderr, "vmlet %s: %s: %s \"%s\" already exists in namespace \"%s\"\n", cmd,
          it->source, it->resource->plural, it->name, it->namespace);
  return 1;
}

static int send_vm(const char *cmd, VmletClient *c, const VmletManifestItem *it,
                   VmletSendMode mode)
{
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s", it->namespace,
                                          it->name);
  /* vmletd's PUT creates and replaces alike: both ask first, create to refuse an existing
   * VM, apply to say "created" or "configured" as kubectl does. Between the two another
   * client could create the VM; this one's PUT would then replace it, as apply does. */
  g_autoptr(JsonNode) old = NULL;
  int rc = mode == VMLET_SEND_CREATE ? refuse_existing(cmd, c, it, path)
                                     : remote_get(cmd, c, path, &old);
  g_autofree char *text = json_to_string(it->object, TRUE);
  g_autoptr(JsonNode) applied = NULL;
  if (rc || (rc = remote_call(cmd, c, "PUT", path, text, 200, &applied)))
    return rc;
  printf("virtualmachine.virtualization.deckhouse.io/%s %s\n", it->name,
         old ? "configured" : "created");
  fflush(stdout);
  remote_print_warnings(applied);
  return 0;
}

static int send_vmbda(const char *cmd, VmletClient *c, const VmletManifestItem *it,
                      VmletSendMode mode)
{
  g_autofree char *path = g_strdup_printf(
      API "/namespaces/%s/virtualmachineblockdeviceattachments/%s", it->namespace, it->name);
  int rc = mode == VMLET_SEND_CREATE ? refuse_existing(cmd, c, it, path) : 0;
  g_autofree char *text = json_to_string(it->object, TRUE);
  return rc ? rc : remote_put_vmbda(cmd, c, it->namespace, it->name, text);
}

int vmlet_manifest_send(const char *cmd, VmletClient *c, const VmletManifestItem *item,
                        VmletSendMode mode)
{
  switch (item->resource->id) {
  case VMLET_RES_VM:
    return send_vm(cmd, c, item, mode);
  case VMLET_RES_VMBDA:
    return send_vmbda(cmd, c, item, mode);
  case VMLET_RES_VMOP: {
    /* An operation is always new (vmletd refuses a name in use): apply creates it too. */
    g_autofree char *text = json_to_string(item->object, FALSE);
    g_autofree char *where = g_strdup_printf("%s: %s", cmd, item->source);
    return vmlet_op_create(where, c, item->namespace, text, NULL);
  }
  }
  g_assert_not_reached();
}
