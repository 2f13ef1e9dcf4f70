#include "actions.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "actions-internal.h"
#include "errors.h"
#include "fileio.h"
#include "jsonval.h"
#include "objects.h"
#include "specdiff.h"
#include "vmlet-error.h"

/* The code of a parser or a write says what failed inside; the action's says what that
 * means for its caller (a drop-in that cannot be read is a Conflict to a patch, not an I/O
 * error of the request). */
void vmlet_action_fail(GError **error, VmletErrorCode code, const GError *cause)
{
  g_set_error_literal(error, VMLET_ERROR, code, cause->message);
}

/* The default namespace is left out, as in a hand-written drop-in. */
char *vmlet_action_dropin_path(VmletManager *mgr, const char *dir, const char *ns,
                               const char *name)
{
  const VmletNode *node = vmlet_manager_get_node(mgr);
  g_autofree char *file = g_str_equal(ns, VMLET_DEFAULT_NAMESPACE)
                              ? g_strdup_printf("%s.json", name)
                              : g_strdup_printf("%s.%s.json", ns, name);
  return g_build_filename(node->config_dir, dir, file, NULL);
}

/* Replacing or removing a List drop-in for one object would silently drop its others. */
static gboolean refuse_if_list(JsonNode *root, const char *path, GError **error)
{
  if (!root || !JSON_NODE_HOLDS_OBJECT(root) ||
      !json_object_has_member(json_node_get_object(root), "items"))
    return TRUE;
  g_set_error(error, VMLET_ERROR, VMLET_ERROR_CONFLICT, "%s holds a List; edit that file directly",
              path);
  return FALSE;
}

gboolean vmlet_action_refuse_list(const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  /* A file that is missing or does not parse holds nothing to lose. */
  if (!vmlet_read_file_bounded(path, VMLET_MAX_DROPIN_BYTES, &data, &len, NULL))
    return TRUE;
  g_autoptr(JsonNode) root = vmlet_json_parse(path, data, (gssize)len, NULL);
  return refuse_if_list(root, path, error);
}

/* {}: for an object that went away while it was being answered. Not
 * json_node_init_object(json_node_alloc(), json_object_new()): that takes a reference of its
 * own, and the new object's first one leaked. */
JsonNode *vmlet_action_empty_object(void)
{
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, json_object_new());
  return n;
}

static JsonNode *vm_json(VmletManager *mgr, const char *ns, const char *name)
{
  VmletVm *vm = vmlet_manager_lookup(mgr, ns, name);
  return vm ? vmlet_vm_to_json(vm) : vmlet_action_empty_object();
}

JsonNode *vmlet_action_parse_json(const char *source, GBytes *body, GError **error)
{
  gsize len = 0;
  const char *data = g_bytes_get_data(body, &len);
  g_autoptr(GError) local = NULL;
  JsonNode *root = vmlet_json_parse(source, data ? data : "", (gssize)len, &local);
  if (!root)
    vmlet_action_fail(error, VMLET_ERROR_MALFORMED, local);
  return root;
}

/* Parsed as the daemon will read it as a drop-in, so nothing is written that would not
 * load. */
GPtrArray *vmlet_action_parse_one(const char *ns, const char *name, GBytes *body,
                                  VmletKind kind, const char *kind_name, GError **error)
{
  gsize len = 0;
  const char *data = g_bytes_get_data(body, &len);
  g_autoptr(GError) local = NULL;
  g_autofree char *source = g_strdup_printf("%s/%s", ns, name);
  g_autoptr(GPtrArray) objs = vmlet_objects_parse(source, data ? data : "", len, NULL, &local);
  if (!objs) {
    vmlet_action_fail(error, VMLET_ERROR_INVALID, local);
    return NULL;
  }
  const VmletObject *o = objs->len == 1 ? objs->pdata[0] : NULL;
  const VmletMeta *meta = o ? vmlet_object_meta(o) : NULL;
  if (!o || o->kind != kind || !g_str_equal(meta->name, name) ||
      !g_str_equal(meta->namespace, ns)) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "%s: expected one %s named \"%s\" in namespace \"%s\"", source, kind_name, name,
                ns);
    return NULL;
  }
  return g_steal_pointer(&objs);
}

gboolean vmlet_action_write_dropin(const char *path, const void *data, gsize len,
                                   GError **error)
{
  g_autoptr(GError) local = NULL;
  if (vmlet_write_file_atomic(path, data, len, 0640, &local))
    return TRUE;
  vmlet_action_fail(error, VMLET_ERROR_IO, local);
  return FALSE;
}

gboolean vmlet_action_remove_dropin(const char *path, GError **error)
{
  if (unlink(path) == 0)
    return TRUE;
  int e = errno;
  g_set_error(error, VMLET_ERROR, e == ENOENT ? VMLET_ERROR_NOT_FOUND : VMLET_ERROR_IO, "%s: %s",
              path, g_strerror(e));
  return FALSE;
}

JsonNode *vmlet_action_apply_vm(VmletManager *mgr, const char *ns, const char *name,
                                GBytes *body, GError **error)
{
  g_autoptr(GPtrArray) objs =
      vmlet_action_parse_one(ns, name, body, VMLET_KIND_VIRTUAL_MACHINE, "VirtualMachine", error);
  if (!objs)
    return NULL;
  /* An existing VM keeps its drop-in file; a new one gets <config-dir>/vms.d/NAME.json. */
  VmletVm *existing = vmlet_manager_lookup(mgr, ns, name);
  g_autofree char *path = existing && vmlet_vm_get_source(existing)
                              ? g_strdup(vmlet_vm_get_source(existing))
                              : vmlet_action_dropin_path(mgr, "vms.d", ns, name);
  gsize len = 0;
  const char *data = g_bytes_get_data(body, &len);
  if (!vmlet_action_refuse_list(path, error) || !vmlet_action_write_dropin(path, data, len, error))
    return NULL;
  vmlet_manager_reload(mgr);
  return vm_json(mgr, ns, name);
}

/* The VM's drop-in as JSON: reading it is not the client's doing, so a failure is a
 * Conflict with the file as it is, as is a List. */
static JsonNode *read_vm_dropin(const char *source, GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autofree char *current = NULL;
  gsize len = 0;
  g_autoptr(JsonNode) doc = NULL;
  if (vmlet_read_file_bounded(source, VMLET_MAX_DROPIN_BYTES, &current, &len, &local))
    doc = vmlet_json_parse(source, current, (gssize)len, &local);
  if (!doc) {
    vmlet_action_fail(error, VMLET_ERROR_CONFLICT, local);
    return NULL;
  }
  return refuse_if_list(doc, source, error) ? g_steal_pointer(&doc) : NULL;
}

JsonNode *vmlet_action_patch_vm(VmletManager *mgr, const char *ns, const char *name,
                                GBytes *patch, GError **error)
{
  VmletVm *vm = vmlet_manager_lookup(mgr, ns, name);
  const char *source = vm ? vmlet_vm_get_source(vm) : NULL;
  if (!source) {
    vmlet_api_set_not_found(error, VMLET_RESOURCE_VMS, ns, name);
    return NULL;
  }
  g_autoptr(JsonNode) p = vmlet_action_parse_json("patch", patch, error);
  g_autoptr(JsonNode) doc = p ? read_vm_dropin(source, error) : NULL;
  if (!doc)
    return NULL;
  g_autoptr(JsonNode) merged = vmlet_merge_patch(doc, p);
  g_autofree char *text = json_to_string(merged, TRUE);
  g_autoptr(GError) local = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse(source, text, strlen(text), NULL, &local);
  VmletObject *o = objs && objs->len == 1 ? objs->pdata[0] : NULL;
  if (!o || o->kind != VMLET_KIND_VIRTUAL_MACHINE || !g_str_equal(o->vm->meta.name, name) ||
      !g_str_equal(o->vm->meta.namespace, ns)) {
    g_set_error_literal(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                        local ? local->message
                              : "the patch must keep the VM's kind, name and namespace");
    return NULL;
  }
  if (!vmlet_action_write_dropin(source, text, strlen(text), error))
    return NULL;
  vmlet_manager_reload(mgr);
  return vm_json(mgr, ns, name);
}

gboolean vmlet_action_delete_vm(VmletManager *mgr, const char *ns, const char *name,
                                GError **error)
{
  g_autofree char *path = vmlet_action_dropin_path(mgr, "vms.d", ns, name);
  g_autoptr(GError) local = NULL;
  if (!vmlet_action_remove_dropin(path, &local)) {
    if (g_error_matches(local, VMLET_ERROR, VMLET_ERROR_NOT_FOUND))
      g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
                  "%s \"%s\" has no drop-in %s (only VMs created through the API can be "
                  "deleted through it)", VMLET_RESOURCE_VMS, name, path);
    else
      g_propagate_error(error, g_steal_pointer(&local));
    return FALSE;
  }
  vmlet_manager_reload(mgr);
  return TRUE;
}

static void on_paused(GObject *src, GAsyncResult *res, gpointer data)
{
  g_autoptr(GTask) task = data;
  g_autoptr(GError) local = NULL;
  if (vmlet_vm_pause_finish(VMLET_VM(src), res, &local)) {
    g_task_return_boolean(task, TRUE);
    return;
  }
  GError *error = NULL;
  /* Not running is the VM's state in the way; a refusal by QEMU is QEMU's. */
  vmlet_action_fail(&error,
                    g_error_matches(local, VMLET_ERROR, VMLET_ERROR_INVALID) ? VMLET_ERROR_CONFLICT
                                                                              : VMLET_ERROR_IO,
                    local);
  g_task_return_error(task, error);
}

void vmlet_action_pause_vm(VmletManager *mgr, const char *ns, const char *name, gboolean pause,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new(NULL, NULL, callback, user_data);
  g_task_set_source_tag(task, vmlet_action_pause_vm);
  VmletVm *vm = vmlet_manager_lookup(mgr, ns, name);
  if (!vm) {
    GError *error = NULL;
    vmlet_api_set_not_found(&error, VMLET_RESOURCE_VMS, ns, name);
    g_task_return_error(task, error);
    return;
  }
  vmlet_vm_pause_async(vm, pause, on_paused, g_steal_pointer(&task));
}

gboolean vmlet_action_pause_vm_finish(GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean(G_TASK(result), error);
}
