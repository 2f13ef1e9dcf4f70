#include "objects.h"

#include "strutil.h"

#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "jsonval.h"
#include "vmlet-error.h"

const VmletMeta *vmlet_object_meta(const VmletObject *obj)
{
  switch (obj->kind) {
  case VMLET_KIND_VIRTUAL_MACHINE:
    return &obj->vm->meta;
  case VMLET_KIND_VIRTUAL_DISK:
  case VMLET_KIND_VIRTUAL_IMAGE:
  case VMLET_KIND_CLUSTER_VIRTUAL_IMAGE:
    return &obj->block->meta;
  case VMLET_KIND_VIRTUAL_MACHINE_CLASS:
    return &obj->klass->meta;
  case VMLET_KIND_SECRET:
    return &obj->secret->meta;
  case VMLET_KIND_VMBDA:
    return &obj->attachment->meta;
  }
  return NULL;
}

void vmlet_object_free(VmletObject *obj)
{
  if (!obj)
    return;
  switch (obj->kind) {
  case VMLET_KIND_VIRTUAL_MACHINE:
    vm_spec_unref(obj->vm);
    break;
  case VMLET_KIND_VIRTUAL_DISK:
  case VMLET_KIND_VIRTUAL_IMAGE:
  case VMLET_KIND_CLUSTER_VIRTUAL_IMAGE:
    vmlet_block_object_unref(obj->block);
    break;
  case VMLET_KIND_VIRTUAL_MACHINE_CLASS:
    vm_class_unref(obj->klass);
    break;
  case VMLET_KIND_SECRET:
    vmlet_secret_unref(obj->secret);
    break;
  case VMLET_KIND_VMBDA:
    vmlet_attachment_unref(obj->attachment);
    break;
  }
  g_free(obj);
}

static const char *const kind_names[] = {"VirtualMachine", "VirtualDisk", "VirtualImage",
                                         "ClusterVirtualImage", "VirtualMachineClass", "Secret",
                                         VMLET_KIND_NAME_VMBDA, NULL};

/* Parses one object; records problems in d. secret_refusal: why the file this comes from
 * may not hold a Secret (NULL when it may). */
static VmletObject *parse_one(JsonObject *root, const char *secret_refusal, VmletDiag *d)
{
  guint kind = 0;
  if (!jv_get_enum(d, root, "", "kind", JV_REQUIRED, kind_names, &kind))
    return NULL;
  g_autoptr(VmletObject) obj = g_new0(VmletObject, 1);
  obj->kind = (VmletKind)kind;
  switch (obj->kind) {
  case VMLET_KIND_VIRTUAL_MACHINE:
    obj->vm = vm_spec_parse(root, d);
    return obj->vm ? g_steal_pointer(&obj) : NULL;
  case VMLET_KIND_VIRTUAL_DISK:
    obj->block = vmlet_block_object_parse(root, VM_BLOCK_VIRTUAL_DISK, d);
    return obj->block ? g_steal_pointer(&obj) : NULL;
  case VMLET_KIND_VIRTUAL_IMAGE:
    obj->block = vmlet_block_object_parse(root, VM_BLOCK_VIRTUAL_IMAGE, d);
    return obj->block ? g_steal_pointer(&obj) : NULL;
  case VMLET_KIND_CLUSTER_VIRTUAL_IMAGE:
    obj->block = vmlet_block_object_parse(root, VM_BLOCK_CLUSTER_VIRTUAL_IMAGE, d);
    return obj->block ? g_steal_pointer(&obj) : NULL;
  case VMLET_KIND_VIRTUAL_MACHINE_CLASS:
    obj->klass = vm_class_parse(root, d);
    return obj->klass ? g_steal_pointer(&obj) : NULL;
  case VMLET_KIND_SECRET:
    obj->secret = secret_refusal ? vmlet_secret_parse_refused(root, d, secret_refusal)
                                 : vmlet_secret_parse(root, d);
    return obj->secret ? g_steal_pointer(&obj) : NULL;
  case VMLET_KIND_VMBDA:
    obj->attachment = vmlet_attachment_parse(root, d);
    return obj->attachment ? g_steal_pointer(&obj) : NULL;
  }
  return NULL;
}

static void collect_warnings(const VmletDiag *d, GPtrArray *warnings)
{
  if (!warnings)
    return;
  g_auto(GStrv) lines = vmlet_diag_warning_lines(d);
  for (guint i = 0; lines[i]; i++)
    g_ptr_array_add(warnings, g_strdup(lines[i]));
}

static GPtrArray *parse_document(const char *source, const char *data, gsize len,
                                 const char *secret_refusal, GPtrArray *warnings, GError **error)
{
  g_autoptr(JsonNode) root = vmlet_json_parse(source, data, (gssize)len, error);
  if (!root)
    return NULL;
  JsonObject *obj = json_node_get_object(root);
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_object_free);
  g_autoptr(VmletDiag) all = vmlet_diag_new(source);

  JsonNode *kind = json_object_get_member(obj, "kind");
  gboolean is_list = kind && JSON_NODE_HOLDS_VALUE(kind) &&
                     json_node_get_value_type(kind) == G_TYPE_STRING &&
                     g_str_equal(json_node_get_string(kind), "List");
  if (!is_list) {
    VmletObject *o = parse_one(obj, secret_refusal, all);
    collect_warnings(all, warnings);
    if (!vmlet_diag_check(all, error))
      return NULL;
    g_ptr_array_add(out, o);
    return g_steal_pointer(&out);
  }
  JsonArray *items = NULL;
  if (!jv_get_array(all, obj, "", "items", JV_REQUIRED, VMLET_MAX_LIST_ITEMS, &items)) {
    vmlet_diag_check(all, error);
    return NULL;
  }
  for (guint i = 0; i < json_array_get_length(items); i++) {
    JsonNode *item = json_array_get_element(items, i);
    g_autofree char *isrc = g_strdup_printf("%s: items[%u]", source, i);
    g_autoptr(VmletDiag) d = vmlet_diag_new(isrc);
    if (!JSON_NODE_HOLDS_OBJECT(item)) {
      g_autofree char *found = vmlet_json_describe(item);
      vmlet_diag_error(all, NULL, "items[%u]: expected an object, found %s", i, found);
      continue;
    }
    VmletObject *o = parse_one(json_node_get_object(item), secret_refusal, d);
    collect_warnings(d, warnings);
    if (o)
      g_ptr_array_add(out, o);
    for (guint j = 0; j < d->errors->len; j++)
      vmlet_diag_error(all, NULL, "items[%u]: %s", i, (const char *)d->errors->pdata[j]);
  }
  if (!vmlet_diag_check(all, error))
    return NULL;
  return g_steal_pointer(&out);
}

GPtrArray *vmlet_objects_parse(const char *source, const char *data, gsize len,
                               GPtrArray *warnings, GError **error)
{
  return parse_document(source, data, len, NULL, warnings, error);
}

GPtrArray *vmlet_objects_load_file(const char *path, gboolean secrets_dir, GPtrArray *warnings,
                                   GError **error)
{
  /* Checked through the descriptor, before anything is read: the refusal, not a parse
   * problem of the Secret (bad base64, say), is what a person is told first. */
  struct stat st;
  vmlet_autofd fd = vmlet_open_regular(path, VMLET_MAX_DROPIN_BYTES, &st, error);
  if (fd < 0)
    return NULL;
  g_autoptr(GError) refused = NULL;
  vmlet_secret_check_stat(path, &st, &refused);
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_fd_bounded(fd, path, VMLET_MAX_DROPIN_BYTES, &data, &len, error))
    return NULL;
  g_autoptr(GError) parse_error = NULL;
  GPtrArray *objs = parse_document(path, data, len, refused ? refused->message : NULL,
                                   warnings, &parse_error);
  if (objs)
    return objs;
  /* In secrets.d a file that does not parse is taken for a Secret: when it may not hold
   * one either way, that is said first. */
  if (refused && secrets_dir)
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID, "%s\n%s", refused->message,
                parse_error->message);
  else
    g_propagate_error(error, g_steal_pointer(&parse_error));
  return NULL;
}

VmletInventory *vmlet_inventory_new(void)
{
  VmletInventory *inv = g_new0(VmletInventory, 1);
  inv->classes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify)vm_class_unref);
  inv->blocks = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)vmlet_block_object_unref);
  inv->secrets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify)vmlet_secret_unref);
  inv->refused_secrets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  inv->attachments = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify)vmlet_attachment_unref);
  inv->attachment_sources = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  inv->refused_attachments = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  return inv;
}

void vmlet_inventory_free(VmletInventory *inv)
{
  if (!inv)
    return;
  g_hash_table_unref(inv->classes);
  g_hash_table_unref(inv->blocks);
  g_hash_table_unref(inv->secrets);
  g_hash_table_unref(inv->refused_secrets);
  g_hash_table_unref(inv->attachments);
  g_hash_table_unref(inv->attachment_sources);
  g_hash_table_unref(inv->refused_attachments);
  g_free(inv);
}

static char *block_key(VmBlockKind kind, const char *ns, const char *name)
{
  /* ClusterVirtualImage is cluster-scoped: its namespace never matters. */
  if (kind == VM_BLOCK_CLUSTER_VIRTUAL_IMAGE)
    ns = "";
  return g_strdup_printf("%s/%s/%s", vm_block_kind_name(kind), ns, name);
}

void vmlet_inventory_add(VmletInventory *inv, const VmletObject *obj)
{
  switch (obj->kind) {
  case VMLET_KIND_VIRTUAL_MACHINE:
    return;
  case VMLET_KIND_VIRTUAL_MACHINE_CLASS:
    g_hash_table_replace(inv->classes, g_strdup(obj->klass->meta.name),
                         vm_class_ref(obj->klass));
    return;
  case VMLET_KIND_SECRET: {
    /* A later object replaces an earlier one, a refused one included. */
    g_autofree char *key =
        g_strdup_printf("%s/%s", obj->secret->meta.namespace, obj->secret->meta.name);
    if (obj->secret->refused) {
      g_hash_table_remove(inv->secrets, key);
      g_hash_table_replace(inv->refused_secrets, g_steal_pointer(&key),
                           g_strdup(obj->secret->refused));
    } else {
      g_hash_table_remove(inv->refused_secrets, key);
      g_hash_table_replace(inv->secrets, g_steal_pointer(&key), vmlet_secret_ref(obj->secret));
    }
    return;
  }
  case VMLET_KIND_VIRTUAL_DISK:
  case VMLET_KIND_VIRTUAL_IMAGE:
  case VMLET_KIND_CLUSTER_VIRTUAL_IMAGE:
    g_hash_table_replace(inv->blocks,
                         block_key(obj->block->kind, obj->block->meta.namespace,
                                   obj->block->meta.name),
                         vmlet_block_object_ref(obj->block));
    return;
  case VMLET_KIND_VMBDA:
    g_hash_table_replace(inv->attachments,
                         g_strdup_printf("%s/%s", obj->attachment->meta.namespace,
                                         obj->attachment->meta.name),
                         vmlet_attachment_ref(obj->attachment));
    return;
  }
}

/* Directory listings are bounded too: a runaway generator must not exhaust the daemon. */
#define VMLET_MAX_DROPINS_PER_DIR 4096

void vmlet_inventory_load_dir(VmletInventory *inv, const char *dir, GPtrArray *problems,
                              GPtrArray *warnings)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) d = g_dir_open(dir, 0, &error);
  if (!d) {
    if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_ptr_array_add(problems, g_strdup_printf("%s: %s", dir, error->message));
    return;
  }
  g_autofree char *base = g_path_get_basename(dir);
  gboolean secrets_dir = g_str_equal(base, "secrets.d");
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(d))) {
    if (!g_str_has_suffix(name, ".json") || name[0] == '.')
      continue;
    if (names->len == VMLET_MAX_DROPINS_PER_DIR) {
      g_ptr_array_add(problems, g_strdup_printf("%s: more than %d drop-ins, the rest ignored",
                                                dir, VMLET_MAX_DROPINS_PER_DIR));
      break;
    }
    g_ptr_array_add(names, g_strdup(name));
  }
  g_ptr_array_sort(names, vmlet_compare_str_ptrs);
  for (guint i = 0; i < names->len; i++) {
    g_autofree char *path = g_build_filename(dir, names->pdata[i], NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) objs = vmlet_objects_load_file(path, secrets_dir, warnings, &err);
    if (!objs) {
      g_ptr_array_add(problems, g_strdup(err->message));
      /* A Secret that does not even load (bad base64, ...) is known by its file name, so
       * the VMs that need it can say why it is missing. */
      if (secrets_dir) {
        g_autofree char *stem = g_strndup(names->pdata[i], strlen(names->pdata[i]) - 5);
        g_hash_table_replace(inv->refused_secrets,
                             g_strdup_printf("%s/%s", VMLET_DEFAULT_NAMESPACE, stem),
                             g_strdup(err->message));
      }
      /* So is an attachment: `vmlet get vmbda` shows it Failed, with every problem. */
      if (g_str_equal(base, "attachments.d")) {
        g_autofree char *stem = g_strndup(names->pdata[i], strlen(names->pdata[i]) - 5);
        char *dot = strchr(stem, '.');
        const char *ns = dot ? stem : VMLET_DEFAULT_NAMESPACE, *att = dot ? dot + 1 : stem;
        if (dot)
          *dot = '\0';
        if (vmlet_is_dns1123_label(ns) && vmlet_is_dns1123_label(att))
          g_hash_table_replace(inv->refused_attachments, g_strdup_printf("%s/%s", ns, att),
                               g_strdup(err->message));
      }
      continue;
    }
    for (guint j = 0; j < objs->len; j++) {
      VmletObject *o = objs->pdata[j];
      vmlet_inventory_add(inv, o);
      if (o->kind == VMLET_KIND_SECRET && o->secret->refused)
        g_ptr_array_add(problems, g_strdup(o->secret->refused));
      /* The API deletes an attachment by removing the file it came from. */
      if (o->kind == VMLET_KIND_VMBDA)
        g_hash_table_replace(inv->attachment_sources,
                             g_strdup_printf("%s/%s", o->attachment->meta.namespace,
                                             o->attachment->meta.name),
                             g_strdup(path));
    }
  }
}

VmClass *vmlet_inventory_class(VmletInventory *inv, const char *name)
{
  return g_hash_table_lookup(inv->classes, name);
}

static gint compare_attachments(gconstpointer a, gconstpointer b)
{
  const VmletAttachment *x = *(VmletAttachment *const *)a, *y = *(VmletAttachment *const *)b;
  int c = strcmp(x->meta.namespace, y->meta.namespace);
  return c ? c : strcmp(x->meta.name, y->meta.name);
}

GPtrArray *vmlet_inventory_attachments(VmletInventory *inv)
{
  GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)vmlet_attachment_unref);
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, inv->attachments);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_ptr_array_add(out, vmlet_attachment_ref(v));
  g_ptr_array_sort(out, compare_attachments);
  return out;
}

VmletBlockObject *vmlet_inventory_block(VmletInventory *inv, VmBlockKind kind,
                                        const char *namespace, const char *name)
{
  g_autofree char *key = block_key(kind, namespace, name);
  return g_hash_table_lookup(inv->blocks, key);
}

VmletSecret *vmlet_inventory_secret(VmletInventory *inv, const char *namespace, const char *name,
                                    char **why)
{
  g_autofree char *key = g_strdup_printf("%s/%s", namespace, name);
  VmletSecret *s = g_hash_table_lookup(inv->secrets, key);
  if (!s && why) {
    const char *refused = g_hash_table_lookup(inv->refused_secrets, key);
    *why = refused ? g_strdup_printf("Secret \"%s\" was refused: %s", name, refused)
                   : g_strdup_printf("Secret \"%s\" not found in namespace \"%s\"", name,
                                     namespace);
  }
  return s;
}
