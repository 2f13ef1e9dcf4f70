#include "manager-private.h"

#include <errno.h>
#include <malloc.h>
#include <string.h>

#include "cgroup.h"
#include "confine.h"
#include "fileio.h"
#include "meta.h"
#include "migrations.h"
#include "plan.h"
#include "render.h"
#include "vmrecord.h"

/* Editors write a file in several steps; one reload after the burst is enough. */
#define RELOAD_DEBOUNCE_MS 200

enum {
  SIGNAL_VM_CHANGED,
  SIGNAL_VM_REMOVED,
  SIGNAL_VM_NOTE,
  SIGNAL_ATT_CHANGED,
  SIGNAL_ATT_REMOVED,
  SIGNAL_NODE_CHANGED,
  SIGNAL_NODE_NOTE,
  N_SIGNALS
};
static guint signals[N_SIGNALS];
G_DEFINE_TYPE(VmletManager, vmlet_manager, G_TYPE_OBJECT)

static void vmlet_manager_finalize(GObject *obj)
{
  VmletManager *mgr = VMLET_MANAGER(obj);
  g_clear_handle_id(&mgr->reload_timer, g_source_remove);
  g_clear_handle_id(&mgr->drain_timer, g_source_remove);
  vmlet_cordon_free(mgr->cordon);
  g_free(mgr->cordon_problem);
  g_ptr_array_unref(mgr->monitors);
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, mgr->vms);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_signal_handlers_disconnect_by_data(v, mgr);
  g_hash_table_unref(mgr->vms);
  g_hash_table_unref(mgr->dropins);
  g_ptr_array_unref(mgr->problems);
  g_ptr_array_unref(mgr->setup_problems);
  g_hash_table_unref(mgr->att_shown);
  g_hash_table_unref(mgr->att_seen);
  g_hash_table_unref(mgr->att_pending);
  g_queue_free_full(mgr->departed_ops, (GDestroyNotify)json_node_unref);
  vmlet_inventory_free(mgr->env.inv);
  vmlet_cgroups_free(mgr->env.cgroups);
  g_free(mgr->env.cgroups_problem);
  vmlet_confine_free(mgr->env.confine);
  vmlet_migrations_free(mgr->env.migrations);
  g_free(mgr->env.migrations_problem);
  vmlet_node_free(mgr->env.node);
  G_OBJECT_CLASS(vmlet_manager_parent_class)->finalize(obj);
}

static void vmlet_manager_class_init(VmletManagerClass *klass)
{
  G_OBJECT_CLASS(klass)->finalize = vmlet_manager_finalize;
  signals[SIGNAL_VM_CHANGED] = g_signal_new("vm-changed", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST,
                                            0, NULL, NULL, NULL, G_TYPE_NONE, 1, VMLET_TYPE_VM);
  signals[SIGNAL_VM_REMOVED] = g_signal_new("vm-removed", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST,
                                            0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING,
                                            G_TYPE_STRING);
  signals[SIGNAL_VM_NOTE] = g_signal_new("vm-note", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST, 0,
                                         NULL, NULL, NULL, G_TYPE_NONE, 3, VMLET_TYPE_VM,
                                         G_TYPE_INT, G_TYPE_STRING);
  signals[SIGNAL_ATT_CHANGED] =
      g_signal_new("attachment-changed", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                   NULL, G_TYPE_NONE, 1, JSON_TYPE_NODE);
  signals[SIGNAL_ATT_REMOVED] =
      g_signal_new("attachment-removed", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                   NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_NODE_CHANGED] = g_signal_new("node-changed", VMLET_TYPE_MANAGER,
                                              G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                              G_TYPE_NONE, 0);
  signals[SIGNAL_NODE_NOTE] = g_signal_new("node-note", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST,
                                           0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_INT,
                                           G_TYPE_STRING);
}

static void vmlet_manager_init(VmletManager *mgr)
{
  mgr->vms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_object_unref);
  mgr->dropins = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, mgr_dropin_free);
  mgr->monitors = g_ptr_array_new_with_free_func(g_object_unref);
  mgr->problems = g_ptr_array_new_with_free_func(g_free);
  mgr->setup_problems = g_ptr_array_new_with_free_func(g_free);
  mgr->att_shown = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  mgr->att_seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  mgr->att_pending = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify)vmlet_attachment_unref);
  mgr->departed_ops = g_queue_new();
}

VmletManager *vmlet_manager_new(VmletNode *node)
{
  VmletManager *mgr = g_object_new(VMLET_TYPE_MANAGER, NULL);
  mgr->env.node = node;
  mgr->env.inv = vmlet_inventory_new();
  g_autoptr(GError) error = NULL;
  mgr->env.cgroups = vmlet_cgroups_new(node, &error);
  if (!mgr->env.cgroups)
    mgr->env.cgroups_problem = g_strdup(error->message);
  g_clear_error(&error);
  /* Bad certificates keep migration off and say why; the node runs its VMs regardless. */
  mgr->env.migrations = vmlet_migrations_new(node, &error);
  if (error)
    mgr->env.migrations_problem = g_strdup(error->message);
  return mgr;
}

const VmletNode *vmlet_manager_get_node(VmletManager *mgr)
{
  return mgr->env.node;
}

GPtrArray *vmlet_manager_problems(VmletManager *mgr)
{
  return mgr->problems;
}

char *mgr_key_for(const char *ns, const char *name)
{
  return g_strdup_printf("%s/%s", ns, name);
}

VmletVm *vmlet_manager_lookup(VmletManager *mgr, const char *ns, const char *name)
{
  g_autofree char *key = mgr_key_for(ns, name);
  return g_hash_table_lookup(mgr->vms, key);
}

static gint compare_vms(gconstpointer a, gconstpointer b)
{
  VmletVm *x = *(VmletVm *const *)a, *y = *(VmletVm *const *)b;
  int c = strcmp(vmlet_vm_get_namespace(x), vmlet_vm_get_namespace(y));
  return c ? c : strcmp(vmlet_vm_get_name(x), vmlet_vm_get_name(y));
}

GPtrArray *vmlet_manager_list(VmletManager *mgr)
{
  GPtrArray *out = g_ptr_array_new_with_free_func(g_object_unref);
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, mgr->vms);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_ptr_array_add(out, g_object_ref(v));
  g_ptr_array_sort(out, compare_vms);
  return out;
}

void mgr_refresh_attachments(VmletManager *mgr);

static void on_vm_changed(VmletVm *vm, VmletManager *mgr)
{
  g_signal_emit(mgr, signals[SIGNAL_VM_CHANGED], 0, vm);
  mgr_refresh_attachments(mgr);
}

static void on_vm_note(VmletVm *vm, gint priority, const char *text, VmletManager *mgr)
{
  g_signal_emit(mgr, signals[SIGNAL_VM_NOTE], 0, vm, priority, text);
}

static void on_vm_gone(VmletVm *vm, VmletManager *mgr)
{
  g_autofree char *ns = g_strdup(vmlet_vm_get_namespace(vm));
  g_autofree char *name = g_strdup(vmlet_vm_get_name(vm));
  g_autofree char *key = mgr_key_for(ns, name);
  g_signal_handlers_disconnect_by_data(vm, mgr);
  mgr_keep_departed_ops(mgr, vm);
  g_hash_table_remove(mgr->vms, key);
  g_signal_emit(mgr, signals[SIGNAL_VM_REMOVED], 0, ns, name);
  mgr_refresh_attachments(mgr);
}

VmletVm *mgr_ensure_vm(VmletManager *mgr, const char *ns, const char *name)
{
  g_autofree char *key = mgr_key_for(ns, name);
  VmletVm *vm = g_hash_table_lookup(mgr->vms, key);
  if (vm)
    return vm;
  vm = vmlet_vm_new(ns, name, &mgr->env);
  g_signal_connect(vm, "changed", G_CALLBACK(on_vm_changed), mgr);
  g_signal_connect(vm, "gone", G_CALLBACK(on_vm_gone), mgr);
  g_signal_connect(vm, "note", G_CALLBACK(on_vm_note), mgr);
  g_hash_table_insert(mgr->vms, g_steal_pointer(&key), vm);
  return vm;
}

static void reload(VmletManager *mgr)
{
  g_clear_handle_id(&mgr->reload_timer, g_source_remove);
  mgr->reloading = TRUE;
  mgr->env.defer_sync = TRUE;
  g_ptr_array_set_size(mgr->problems, 0);
  for (guint i = 0; i < mgr->setup_problems->len; i++)
    g_ptr_array_add(mgr->problems, g_strdup(mgr->setup_problems->pdata[i]));
  vmlet_inventory_free(mgr->env.inv);
  mgr->env.inv = vmlet_node_inventory(mgr->env.node, mgr->problems, NULL);
  if (mgr->env.migrations)
    vmlet_migrations_load_peers(mgr->env.migrations, mgr->problems);
  else if (mgr->env.migrations_problem)
    g_ptr_array_add(mgr->problems, g_strdup(mgr->env.migrations_problem));
  GHashTableIter pending;
  gpointer pv;
  g_hash_table_iter_init(&pending, mgr->att_pending);
  while (g_hash_table_iter_next(&pending, NULL, &pv)) {
    VmletAttachment *att = pv;
    g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
    if (!g_hash_table_contains(mgr->env.inv->attachments, id)) {
      g_autofree char *path = vmlet_node_dropin_path(mgr->env.node, "attachments.d",
                                                     att->meta.namespace, att->meta.name);
      mgr_add_to_inventory(mgr, att, path);
    }
  }
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GPtrArray) loaded = g_ptr_array_new_with_free_func(mgr_loaded_vm_free);
  mgr_load_vms(mgr, seen, loaded);
  /* Once every drop-in is read (a List in vms.d may carry a Secret or a disk), each VM's
   * warnings: its drop-in's and its plan's (rounded memory, a #cloud-config that is not
   * valid YAML, inline or in its Secret). The plan's errors are not reported here: starting
   * the VM reports them as the reason it is Pending. */
  for (guint i = 0; i < loaded->len; i++) {
    LoadedVm *l = loaded->pdata[i];
    g_autoptr(VmletDiag) d = vmlet_diag_new(vmlet_vm_get_source(l->vm));
    vm_plan_unref(vm_plan_build(l->spec, mgr->env.inv, mgr->env.node, d));
    g_auto(GStrv) lines = vmlet_diag_warning_lines(d);
    for (guint k = 0; lines[k]; k++)
      g_ptr_array_add(l->warnings, g_strdup(lines[k]));
    vmlet_vm_set_warnings(l->vm, l->warnings);
  }
  /* VMs whose drop-in is gone are deleted: Terminating, stopped, forgotten. */
  g_autoptr(GPtrArray) all = vmlet_manager_list(mgr);
  for (guint i = 0; i < all->len; i++) {
    VmletVm *vm = all->pdata[i];
    g_autofree char *key = mgr_key_for(vmlet_vm_get_namespace(vm), vmlet_vm_get_name(vm));
    /* A VM still arriving by migration has no drop-in until it is committed here. */
    if (!g_hash_table_contains(seen, key) && !vmlet_vm_is_migrating_in(vm))
      vmlet_vm_delete(vm);
  }
  g_ptr_array_unref(all);
  all = vmlet_manager_list(mgr);
  for (guint i = 0; i < all->len; i++)
    vmlet_vm_reconcile(all->pdata[i]);
  mgr_distribute_attachments(mgr, TRUE);
  mgr->reloading = FALSE;
  mgr_refresh_attachments(mgr);
  /* Records written during the reload without fsync (VMs without a QEMU): one syncfs for
   * all of them. 1000 new drop-ins cost one sync instead of 2000 fsyncs (tests/bench). */
  mgr->env.defer_sync = FALSE;
  if (mgr->env.sync_pending) {
    g_autoptr(GError) error = NULL;
    mgr->env.sync_pending = FALSE;
    if (!vmlet_sync_fs(mgr->env.node->state_dir, &error))
      g_ptr_array_add(mgr->problems, g_strdup(error->message));
  }
}

void vmlet_manager_reload(VmletManager *mgr)
{
  reload(mgr);
  /* A reload parses changed drop-ins and the node's other drop-in directories again and
   * frees what they replace: give the freed pages back (after reload()'s own temporaries
   * are gone), or the daemon's RSS stays at the high-water mark of its busiest reload. */
  malloc_trim(0);
}

static gboolean on_reload_timer(gpointer data)
{
  VmletManager *mgr = data;
  mgr->reload_timer = 0;
  vmlet_manager_reload(mgr);
  return G_SOURCE_REMOVE;
}

static void on_dir_changed(GFileMonitor *mon, GFile *file, GFile *other, GFileMonitorEvent ev,
                           VmletManager *mgr)
{
  g_clear_handle_id(&mgr->reload_timer, g_source_remove);
  mgr->reload_timer = g_timeout_add(RELOAD_DEBOUNCE_MS, on_reload_timer, mgr);
}

static void watch_dir(VmletManager *mgr, const char *path)
{
  g_autoptr(GFile) dir = g_file_new_for_path(path);
  g_autoptr(GError) error = NULL;
  GFileMonitor *mon = g_file_monitor_directory(dir, G_FILE_MONITOR_WATCH_MOVES, NULL, &error);
  if (!mon) {
    g_ptr_array_add(mgr->setup_problems,
                    g_strdup_printf("%s: cannot watch: %s", path, error->message));
    return;
  }
  g_signal_connect(mon, "changed", G_CALLBACK(on_dir_changed), mgr);
  g_ptr_array_add(mgr->monitors, mon);
}

/* A record this vmletd cannot read (damaged, or of a newer vmletd) may name a QEMU that runs
 * the VM: the VM it is named after (<ns>.<name>.json) is held, never started beside that
 * QEMU and its record never overwritten, until someone fixes or removes the record. */
static void hold_unreadable(VmletManager *mgr, const char *path, const char *why)
{
  g_autofree char *base = g_path_get_basename(path);
  g_auto(GStrv) parts = g_strsplit(base, ".", 3);
  if (g_strv_length(parts) != 3 || !g_str_equal(parts[2], "json") ||
      !vmlet_is_dns1123_label(parts[0]) || !vmlet_is_dns1123_label(parts[1]))
    return;
  g_autofree char *held = g_strdup_printf("%s; vmletd leaves this VM alone (its QEMU may be "
                                          "running): fix or remove the record, then restart "
                                          "vmletd", why);
  vmlet_vm_hold(mgr_ensure_vm(mgr, parts[0], parts[1]), "RecordUnreadable", held);
}

void vmlet_manager_start(VmletManager *mgr)
{
  const VmletNode *node = mgr->env.node;
  /* Before anything can start a VM. */
  mgr_cordon_load(mgr);
  /* Adopt first: a VM with a live QEMU must be known before any reconcile can start it. */
  g_autoptr(GPtrArray) records = vmlet_vm_record_list(node->state_dir);
  for (guint i = 0; i < records->len; i++) {
    g_autoptr(GError) error = NULL;
    VmletVmRecord *rec = vmlet_vm_record_load(records->pdata[i], &error);
    if (!rec) {
      g_ptr_array_add(mgr->setup_problems, g_strdup(error->message));
      hold_unreadable(mgr, records->pdata[i], error->message);
      continue;
    }
    VmletVm *vm = mgr_ensure_vm(mgr, rec->namespace, rec->name);
    vmlet_vm_adopt(vm, rec);
  }
  mgr_migrations_claim(mgr);
  static const char *const subdirs[] = {"vms.d",     "classes.d",     "disks.d", "images.d",
                                        "secrets.d", "attachments.d", "peers.d"};
  for (gsize i = 0; i < G_N_ELEMENTS(subdirs); i++) {
    g_autofree char *dir = g_build_filename(node->config_dir, subdirs[i], NULL);
    /* Secrets' directory is private like the Secrets themselves. */
    if (g_mkdir_with_parents(dir, g_str_equal(subdirs[i], "secrets.d") ? 0700 : 0750) < 0) {
      g_ptr_array_add(mgr->setup_problems, g_strdup_printf("%s: %s", dir, g_strerror(errno)));
      continue;
    }
    watch_dir(mgr, dir);
  }
  vmlet_manager_reload(mgr);
  mgr_migrations_act(mgr);
  mgr_cordon_resume(mgr);
}


void mgr_emit_attachment_changed(VmletManager *mgr, JsonNode *attachment)
{
  g_signal_emit(mgr, signals[SIGNAL_ATT_CHANGED], 0, attachment);
}

void mgr_emit_attachment_removed(VmletManager *mgr, const char *ns, const char *name)
{
  g_signal_emit(mgr, signals[SIGNAL_ATT_REMOVED], 0, ns, name);
}

const char *vmlet_manager_migrations_problem(VmletManager *mgr)
{
  return mgr->env.migrations_problem;
}

void mgr_emit_node_changed(VmletManager *mgr)
{
  g_signal_emit(mgr, signals[SIGNAL_NODE_CHANGED], 0);
}

void mgr_emit_node_note(VmletManager *mgr, int priority, const char *text)
{
  g_signal_emit(mgr, signals[SIGNAL_NODE_NOTE], 0, priority, text);
}
