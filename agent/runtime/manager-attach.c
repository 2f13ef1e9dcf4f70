/* VirtualMachineBlockDeviceAttachments across the node's VMs: which VM holds a read-write
 * disk, each VM's share handed to its controller, and the status announced on change. */
#include "manager-private.h"

#include <string.h>

#include "attachment.h"
#include "slots.h"

/* ---- VirtualMachineBlockDeviceAttachments ---- */

static char *disk_key(const VmletAttachment *att)
{
  return g_strdup_printf("%s/%s", att->meta.namespace, att->block_name);
}

static gboolean holds(VmletManager *mgr, const VmletAttachment *att)
{
  VmletVm *vm = vmlet_manager_lookup(mgr, att->meta.namespace, att->vm_name);
  return vm && vmlet_attach_ctl_holds(vmlet_vm_get_attachments(vm), att->meta.name);
}

/* A VirtualDisk is attached read-write, so to one VM at a time: the one whose spec lists
 * it, else the attachment that already holds it, else the first by name. The others are
 * refused with the holder's name (name -> VmbdaProblem *). Images are read-only and may
 * be attached anywhere. Conflicts within one VM are attachctl.c's. */
static GHashTable *cross_vm_conflicts(VmletManager *mgr, GPtrArray *atts)
{
  GHashTable *out = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify)vmbda_problem_free);
  g_autoptr(GHashTable) spec_user = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmSpec *spec = vmlet_vm_get_spec(vms->pdata[i]);
    for (guint j = 0; spec && j < spec->block_devices->len; j++) {
      const VmBlockDeviceRef *ref = spec->block_devices->pdata[j];
      g_autofree char *key = g_strdup_printf("%s/%s", spec->meta.namespace, ref->name);
      if (ref->kind == VM_BLOCK_VIRTUAL_DISK && !g_hash_table_contains(spec_user, key))
        g_hash_table_insert(spec_user, g_steal_pointer(&key), g_strdup(spec->meta.name));
    }
  }
  /* Holders first, then the rest in name order. */
  g_autoptr(GPtrArray) order = g_ptr_array_new();
  for (guint pass = 0; pass < 2; pass++)
    for (guint i = 0; i < atts->len; i++) {
      VmletAttachment *att = atts->pdata[i];
      if (att->kind == VM_BLOCK_VIRTUAL_DISK && holds(mgr, att) == (pass == 0))
        g_ptr_array_add(order, att);
    }
  g_autoptr(GHashTable) holder = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < order->len; i++) {
    VmletAttachment *att = order->pdata[i];
    g_autofree char *key = disk_key(att);
    g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
    const char *user = g_hash_table_lookup(spec_user, key);
    if (user && !g_str_equal(user, att->vm_name)) {
      g_hash_table_replace(out, g_steal_pointer(&id),
                           vmbda_problem_new(VMBDA_REASON_CONFLICT,
                                             "VirtualDisk \"%s\" is attached read-write to "
                                             "VirtualMachine \"%s\" (its spec.blockDeviceRefs); a "
                                             "disk can be attached to one VM at a time",
                                             att->block_name, user));
      continue;
    }
    VmletAttachment *h = g_hash_table_lookup(holder, key);
    if (!h) {
      g_hash_table_insert(holder, g_steal_pointer(&key), att);
    } else if (!g_str_equal(h->vm_name, att->vm_name)) {
      g_hash_table_replace(out, g_steal_pointer(&id),
                           vmbda_problem_new(VMBDA_REASON_CONFLICT,
                                             "VirtualDisk \"%s\" is attached read-write to "
                                             "VirtualMachine \"%s\" by "
                                             "VirtualMachineBlockDeviceAttachment \"%s\"; a disk "
                                             "can be attached to one VM at a time",
                                             att->block_name, h->vm_name, h->meta.name));
    }
  }
  return out;
}

/* Hands every VM the attachments that name it (an empty list detaches the rest). */
void mgr_distribute_attachments(VmletManager *mgr, gboolean retry)
{
  g_autoptr(GPtrArray) atts = vmlet_inventory_attachments(mgr->env.inv);
  g_autoptr(GHashTable) conflicts = cross_vm_conflicts(mgr, atts);
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmletVm *vm = vms->pdata[i];
    g_autoptr(GPtrArray) mine = g_ptr_array_new();
    g_autoptr(GHashTable) mine_conflicts =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint j = 0; j < atts->len; j++) {
      VmletAttachment *att = atts->pdata[j];
      if (!g_str_equal(att->meta.namespace, vmlet_vm_get_namespace(vm)) ||
          !g_str_equal(att->vm_name, vmlet_vm_get_name(vm)))
        continue;
      g_ptr_array_add(mine, att);
      g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
      VmbdaProblem *p = g_hash_table_lookup(conflicts, id);
      if (p)
        g_hash_table_insert(mine_conflicts, g_strdup(att->meta.name), p);
    }
    vmlet_vm_set_attachments(vm, mine, mine_conflicts, retry);
  }
  gint64 now = g_get_real_time();
  for (guint j = 0; j < atts->len; j++) {
    VmletAttachment *att = atts->pdata[j];
    g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
    if (!g_hash_table_contains(mgr->att_seen, id))
      g_hash_table_insert(mgr->att_seen, g_steal_pointer(&id), g_memdup2(&now, sizeof(now)));
  }
}

static JsonNode *attachment_json(VmletManager *mgr, const VmletAttachment *att)
{
  VmletVm *vm = vmlet_manager_lookup(mgr, att->meta.namespace, att->vm_name);
  VmbdaStatus st = {0};
  if (vm && vmlet_attach_ctl_status(vmlet_vm_get_attachments(vm), att->meta.name, &st))
    return vmlet_attachment_to_json(att, &st);
  g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
  g_autofree char *why = g_strdup_printf("VirtualMachine \"%s\" not found in namespace \"%s\"",
                                         att->vm_name, att->meta.namespace);
  gint64 *seen = g_hash_table_lookup(mgr->att_seen, id);
  st.phase = VMBDA_PHASE_PENDING;
  st.reason = VMBDA_REASON_VM_NOT_READY;
  st.message = why;
  st.created_us = seen ? *seen : 0;
  return vmlet_attachment_to_json(att, &st);
}

/* Every attachment as the API shows it, "namespace/name" -> JsonNode: the wanted ones,
 * then those still being detached after their object went away. */
static GHashTable *all_attachments(VmletManager *mgr, const char *ns)
{
  GHashTable *out = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify)json_node_unref);
  g_autoptr(GPtrArray) atts = vmlet_inventory_attachments(mgr->env.inv);
  for (guint i = 0; i < atts->len; i++) {
    VmletAttachment *att = atts->pdata[i];
    if (ns && !g_str_equal(ns, att->meta.namespace))
      continue;
    g_hash_table_insert(out, g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name),
                        attachment_json(mgr, att));
  }
  GHashTableIter refused;
  gpointer rk, rv;
  g_hash_table_iter_init(&refused, mgr->env.inv->refused_attachments);
  while (g_hash_table_iter_next(&refused, &rk, &rv)) {
    g_autofree char *rns = g_strdup(rk);
    char *slash = strchr(rns, '/');
    *slash = '\0';
    if ((!ns || g_str_equal(ns, rns)) && !g_hash_table_contains(out, rk))
      g_hash_table_insert(out, g_strdup(rk), vmlet_attachment_refused_json(rns, slash + 1, rv));
  }
  g_autoptr(GPtrArray) vms = vmlet_manager_list(mgr);
  for (guint i = 0; i < vms->len; i++) {
    VmletVm *vm = vms->pdata[i];
    if (ns && !g_str_equal(ns, vmlet_vm_get_namespace(vm)))
      continue;
    VmletAttachCtl *ctl = vmlet_vm_get_attachments(vm);
    g_autoptr(GPtrArray) going = vmlet_attach_ctl_terminating(ctl);
    for (guint j = 0; j < going->len; j++) {
      VmletAttachment *att = going->pdata[j];
      g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
      VmbdaStatus st = {0};
      if (g_hash_table_contains(out, id) ||
          !vmlet_attach_ctl_status(ctl, att->meta.name, &st))
        continue;
      g_hash_table_insert(out, g_steal_pointer(&id), vmlet_attachment_to_json(att, &st));
    }
  }
  return out;
}

/* Announces every attachment whose JSON changed, and those that are gone. */
void mgr_refresh_attachments(VmletManager *mgr)
{
  if (mgr->reloading)
    return;
  g_autoptr(GHashTable) now = all_attachments(mgr, NULL);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, now);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    g_autofree char *text = json_to_string(v, FALSE);
    if (g_strcmp0(g_hash_table_lookup(mgr->att_shown, k), text) == 0)
      continue;
    g_hash_table_replace(mgr->att_shown, g_strdup(k), g_steal_pointer(&text));
    mgr_emit_attachment_changed(mgr, v);
  }
  g_autoptr(GList) shown = g_hash_table_get_keys(mgr->att_shown);
  for (GList *l = shown; l; l = l->next) {
    if (g_hash_table_contains(now, l->data))
      continue;
    g_autofree char *id = g_strdup(l->data);
    g_hash_table_remove(mgr->att_shown, id);
    g_hash_table_remove(mgr->att_seen, id);
    char *slash = strchr(id, '/');
    *slash = '\0';
    mgr_emit_attachment_removed(mgr, id, slash + 1);
  }
}

static gint compare_json_names(gconstpointer a, gconstpointer b)
{
  JsonObject *x = json_node_get_object(*(JsonNode *const *)a);
  JsonObject *y = json_node_get_object(*(JsonNode *const *)b);
  JsonObject *mx = json_object_get_object_member(x, "metadata");
  JsonObject *my = json_object_get_object_member(y, "metadata");
  int c = strcmp(json_object_get_string_member(mx, "namespace"),
                 json_object_get_string_member(my, "namespace"));
  return c ? c : strcmp(json_object_get_string_member(mx, "name"),
                        json_object_get_string_member(my, "name"));
}

GPtrArray *vmlet_manager_attachments(VmletManager *mgr, const char *ns)
{
  g_autoptr(GHashTable) all = all_attachments(mgr, ns);
  GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)json_node_unref);
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, all);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_ptr_array_add(out, json_node_ref(v));
  g_ptr_array_sort(out, compare_json_names);
  return out;
}

JsonNode *vmlet_manager_attachment(VmletManager *mgr, const char *ns, const char *name)
{
  g_autoptr(GHashTable) all = all_attachments(mgr, ns);
  g_autofree char *id = g_strdup_printf("%s/%s", ns, name);
  JsonNode *n = g_hash_table_lookup(all, id);
  return n ? json_node_ref(n) : NULL;
}

const char *vmlet_manager_attachment_source(VmletManager *mgr, const char *ns, const char *name)
{
  g_autofree char *id = g_strdup_printf("%s/%s", ns, name);
  return g_hash_table_lookup(mgr->env.inv->attachment_sources, id);
}

void mgr_add_to_inventory(VmletManager *mgr, VmletAttachment *att, const char *source)
{
  g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
  VmletObject obj = {.kind = VMLET_KIND_VMBDA, .attachment = att};
  vmlet_inventory_add(mgr->env.inv, &obj);
  g_hash_table_replace(mgr->env.inv->attachment_sources, g_strdup(id), g_strdup(source));
  g_hash_table_remove(mgr->env.inv->refused_attachments, id);
}

void vmlet_manager_add_attachment(VmletManager *mgr, VmletAttachment *att, const char *source)
{
  g_hash_table_replace(mgr->att_pending,
                       g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name),
                       vmlet_attachment_ref(att));
  mgr_add_to_inventory(mgr, att, source);
  mgr_distribute_attachments(mgr, FALSE);
  mgr_refresh_attachments(mgr);
}

void vmlet_manager_attachment_written(VmletManager *mgr, const char *ns, const char *name,
                                      gboolean ok)
{
  g_autofree char *id = g_strdup_printf("%s/%s", ns, name);
  g_hash_table_remove(mgr->att_pending, id);
  if (!ok)
    vmlet_manager_reload(mgr);
}

VmbdaProblem *vmlet_manager_check_attachment(VmletManager *mgr, const VmletAttachment *att)
{
  g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
  VmletAttachment *existing = g_hash_table_lookup(mgr->env.inv->attachments, id);
  if (existing && !vmlet_attachment_same_spec(existing, att))
    return vmbda_problem_new(VMBDA_REASON_CONFLICT,
                             "VirtualMachineBlockDeviceAttachment \"%s\" already attaches %s "
                             "\"%s\" to VirtualMachine \"%s\"; its spec cannot change (delete "
                             "it and create another)",
                             att->meta.name, vm_block_kind_name(existing->kind),
                             existing->block_name, existing->vm_name);
  if (existing)
    return NULL; /* the same again: nothing to do */
  g_autoptr(GPtrArray) atts = vmlet_inventory_attachments(mgr->env.inv);
  g_ptr_array_add(atts, vmlet_attachment_ref((VmletAttachment *)att));
  g_autoptr(GHashTable) conflicts = cross_vm_conflicts(mgr, atts);
  VmbdaProblem *p = g_hash_table_lookup(conflicts, id);
  if (p)
    return vmbda_problem_new(p->reason, "%s", p->message);
  g_autoptr(GPtrArray) others = g_ptr_array_new();
  for (guint i = 0; i + 1 < atts->len; i++) {
    VmletAttachment *o = atts->pdata[i];
    if (g_str_equal(o->meta.namespace, att->meta.namespace) &&
        g_str_equal(o->vm_name, att->vm_name))
      g_ptr_array_add(others, o);
  }
  VmletVm *vm = vmlet_manager_lookup(mgr, att->meta.namespace, att->vm_name);
  return vmlet_slots_check(vm ? vmlet_vm_get_spec(vm) : NULL, others, att);
}

