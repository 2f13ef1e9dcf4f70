#include "manager.h"

#include "cgroup.h"
#include "confine.h"

#include "strutil.h"

#include <malloc.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "attachment.h"
#include "fileio.h"
#include "meta.h"
#include "objects.h"
#include "plan.h"
#include "render.h"
#include "slots.h"
#include "vmrecord.h"

/* Editors write a file in several steps; one reload after the burst is enough. */
#define RELOAD_DEBOUNCE_MS 200

/* A vms.d drop-in as last read, reused while the file is unchanged: with many VMs, a change
 * to one file must not parse them all again (1000 drop-ins: tens of ms of a blocked loop,
 * and heap churn that stays as RSS). Keyed on what any change to the file changes. */
typedef struct {
  dev_t dev;
  ino_t ino;
  off_t size;
  mode_t mode;
  uid_t uid;
  struct timespec mtime, ctime;
  GPtrArray *objs;     /* VmletObject *; NULL when the file failed to load */
  GPtrArray *warnings; /* char * */
  char *error;
} Dropin;

static void dropin_free(gpointer p)
{
  Dropin *c = p;
  if (c->objs)
    g_ptr_array_unref(c->objs);
  g_ptr_array_unref(c->warnings);
  g_free(c->error);
  g_free(c);
}

struct _VmletManager {
  GObject parent;
  VmletVmEnv env;
  GHashTable *vms;      /* "namespace/name" -> VmletVm * */
  GHashTable *dropins;  /* path -> Dropin * */
  GPtrArray *monitors;  /* GFileMonitor * */
  GPtrArray *problems;  /* char * */
  guint reload_timer;
  GHashTable *att_shown; /* "namespace/name" -> the attachment's JSON as last announced */
  GHashTable *att_seen;  /* "namespace/name" -> gint64 *: first seen, for those with no VM */
  gboolean reloading;    /* VMs and attachments are out of step until the reload ends */
  GHashTable *att_pending; /* "namespace/name" -> VmletAttachment * whose drop-in is being
                            * written: a reload meanwhile must not take it for deleted */
};

enum { SIGNAL_VM_CHANGED, SIGNAL_VM_REMOVED, SIGNAL_ATT_CHANGED, SIGNAL_ATT_REMOVED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VmletManager, vmlet_manager, G_TYPE_OBJECT)

static void vmlet_manager_finalize(GObject *obj)
{
  VmletManager *mgr = VMLET_MANAGER(obj);
  g_clear_handle_id(&mgr->reload_timer, g_source_remove);
  g_ptr_array_unref(mgr->monitors);
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, mgr->vms);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_signal_handlers_disconnect_by_data(v, mgr);
  g_hash_table_unref(mgr->vms);
  g_hash_table_unref(mgr->dropins);
  g_ptr_array_unref(mgr->problems);
  g_hash_table_unref(mgr->att_shown);
  g_hash_table_unref(mgr->att_seen);
  g_hash_table_unref(mgr->att_pending);
  vmlet_inventory_free(mgr->env.inv);
  vmlet_cgroups_free(mgr->env.cgroups);
  g_free(mgr->env.cgroups_problem);
  vmlet_confine_free(mgr->env.confine);
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
  signals[SIGNAL_ATT_CHANGED] =
      g_signal_new("attachment-changed", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                   NULL, G_TYPE_NONE, 1, JSON_TYPE_NODE);
  signals[SIGNAL_ATT_REMOVED] =
      g_signal_new("attachment-removed", VMLET_TYPE_MANAGER, G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                   NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);
}

static void vmlet_manager_init(VmletManager *mgr)
{
  mgr->vms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_object_unref);
  mgr->dropins = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, dropin_free);
  mgr->monitors = g_ptr_array_new_with_free_func(g_object_unref);
  mgr->problems = g_ptr_array_new_with_free_func(g_free);
  mgr->att_shown = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  mgr->att_seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  mgr->att_pending = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify)vmlet_attachment_unref);
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

static char *key_for(const char *ns, const char *name)
{
  return g_strdup_printf("%s/%s", ns, name);
}

VmletVm *vmlet_manager_lookup(VmletManager *mgr, const char *ns, const char *name)
{
  g_autofree char *key = key_for(ns, name);
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

char *vmlet_manager_summary(VmletManager *mgr)
{
  guint counts[VM_PHASE_TERMINATING + 1] = {0};
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, mgr->vms);
  while (g_hash_table_iter_next(&it, NULL, &v))
    counts[vmlet_vm_get_phase(v)]++;
  GString *s = g_string_new(NULL);
  g_string_printf(s, "%u VMs", g_hash_table_size(mgr->vms));
  const char *sep = ": ";
  for (guint p = 0; p <= VM_PHASE_TERMINATING; p++)
    if (counts[p]) {
      g_string_append_printf(s, "%s%u %s", sep, counts[p], vm_phase_name((VmPhase)p));
      sep = ", ";
    }
  return g_string_free(s, FALSE);
}

static void refresh_attachments(VmletManager *mgr);

static void on_vm_changed(VmletVm *vm, VmletManager *mgr)
{
  g_signal_emit(mgr, signals[SIGNAL_VM_CHANGED], 0, vm);
  refresh_attachments(mgr);
}

static void on_vm_gone(VmletVm *vm, VmletManager *mgr)
{
  g_autofree char *ns = g_strdup(vmlet_vm_get_namespace(vm));
  g_autofree char *name = g_strdup(vmlet_vm_get_name(vm));
  g_autofree char *key = key_for(ns, name);
  g_signal_handlers_disconnect_by_data(vm, mgr);
  g_hash_table_remove(mgr->vms, key);
  g_signal_emit(mgr, signals[SIGNAL_VM_REMOVED], 0, ns, name);
  refresh_attachments(mgr);
}

static VmletVm *ensure_vm(VmletManager *mgr, const char *ns, const char *name)
{
  g_autofree char *key = key_for(ns, name);
  VmletVm *vm = g_hash_table_lookup(mgr->vms, key);
  if (vm)
    return vm;
  vm = vmlet_vm_new(ns, name, &mgr->env);
  g_signal_connect(vm, "changed", G_CALLBACK(on_vm_changed), mgr);
  g_signal_connect(vm, "gone", G_CALLBACK(on_vm_gone), mgr);
  g_hash_table_insert(mgr->vms, g_steal_pointer(&key), vm);
  return vm;
}

/* A drop-in that does not even name its VM is reported under its file name, so a person
 * still sees it as a Pending VM with the reason. */
static char *name_from_file(const char *file)
{
  g_autofree char *base = g_path_get_basename(file);
  char *dot = strrchr(base, '.');
  if (dot)
    *dot = '\0';
  return vmlet_is_dns1123_label(base) ? g_strdup(base) : NULL;
}

/* A VM read from vms.d in this reload, with the warnings of its part of the drop-in. */
typedef struct {
  VmletVm *vm;
  VmSpec *spec;
  GPtrArray *warnings; /* char * */
} LoadedVm;

static void loaded_vm_free(gpointer p)
{
  LoadedVm *l = p;
  g_object_unref(l->vm);
  vm_spec_unref(l->spec);
  g_ptr_array_unref(l->warnings);
  g_free(l);
}

/* The warnings of a file that are about object j: a List item's own ("FILE: items[j]: ...")
 * and those about the file as a whole. */
static GPtrArray *warnings_for_item(GPtrArray *file_warnings, const char *path, guint j)
{
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
  g_autofree char *list_prefix = g_strdup_printf("%s: items[", path);
  g_autofree char *own_prefix = g_strdup_printf("%s: items[%u]:", path, j);
  for (guint i = 0; i < file_warnings->len; i++) {
    const char *w = file_warnings->pdata[i];
    if (!g_str_has_prefix(w, list_prefix) || g_str_has_prefix(w, own_prefix))
      g_ptr_array_add(out, g_strdup(w));
  }
  return out;
}

static gboolean same_time(const struct timespec *a, const struct timespec *b)
{
  return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* The drop-in at path, read again only when it changed since the last reload. */
static Dropin *read_dropin(VmletManager *mgr, const char *path)
{
  struct stat st;
  Dropin *c = g_hash_table_lookup(mgr->dropins, path);
  if (c && stat(path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino &&
      st.st_size == c->size && st.st_mode == c->mode && st.st_uid == c->uid &&
      same_time(&st.st_mtim, &c->mtime) && same_time(&st.st_ctim, &c->ctime))
    return c;
  gboolean have_stat = stat(path, &st) == 0;
  c = g_new0(Dropin, 1);
  c->warnings = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GError) error = NULL;
  c->objs = vmlet_objects_load_file(path, FALSE, c->warnings, &error);
  if (!c->objs)
    c->error = g_strdup(error->message);
  /* Timestamps are as coarse as the kernel's clock tick: a file rewritten in place, at the
   * same size, within the tick of the version read here would look unchanged. A file that
   * changed in the last second is therefore read again next time ("racy git"). */
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (have_stat && st.st_mtim.tv_sec + 1 < now.tv_sec && st.st_ctim.tv_sec + 1 < now.tv_sec) {
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->size = st.st_size;
    c->mode = st.st_mode;
    c->uid = st.st_uid;
    c->mtime = st.st_mtim;
    c->ctime = st.st_ctim;
  } else {
    c->ino = 0; /* never matches a real file: read again */
    c->size = -1;
  }
  g_hash_table_replace(mgr->dropins, g_strdup(path), c);
  return c;
}

static void load_vms(VmletManager *mgr, GHashTable *seen, GPtrArray *loaded)
{
  g_autofree char *dir = g_build_filename(mgr->env.node->config_dir, "vms.d", NULL);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
  const char *f;
  while (d && (f = g_dir_read_name(d)))
    if (f[0] != '.' && g_str_has_suffix(f, ".json") && files->len < 4096)
      g_ptr_array_add(files, g_build_filename(dir, f, NULL));
  g_ptr_array_sort(files, vmlet_compare_str_ptrs);
  /* Forget the files that are gone. */
  g_autoptr(GHashTable) present = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < files->len; i++)
    g_hash_table_add(present, files->pdata[i]);
  GHashTableIter it;
  gpointer cached_path;
  g_hash_table_iter_init(&it, mgr->dropins);
  while (g_hash_table_iter_next(&it, &cached_path, NULL))
    if (!g_hash_table_contains(present, cached_path))
      g_hash_table_iter_remove(&it);
  for (guint i = 0; i < files->len; i++) {
    const char *path = files->pdata[i];
    Dropin *dropin = read_dropin(mgr, path);
    GPtrArray *objs = dropin->objs, *file_warnings = dropin->warnings;
    if (!objs) {
      g_autofree char *name = name_from_file(path);
      if (!name) {
        g_ptr_array_add(mgr->problems, g_strdup(dropin->error));
        continue;
      }
      g_autofree char *key = key_for(VMLET_DEFAULT_NAMESPACE, name);
      if (g_hash_table_contains(seen, key))
        continue;
      VmletVm *vm = ensure_vm(mgr, VMLET_DEFAULT_NAMESPACE, name);
      vmlet_vm_set_spec(vm, NULL, path, dropin->error);
      vmlet_vm_set_warnings(vm, NULL);
      g_hash_table_insert(seen, g_steal_pointer(&key), g_strdup(path));
      continue;
    }
    for (guint j = 0; j < objs->len; j++) {
      VmletObject *o = objs->pdata[j];
      if (o->kind != VMLET_KIND_VIRTUAL_MACHINE) {
        /* A Secret here is checked like one in secrets.d (objects.c): a List readable by
         * others gets it refused, and the VMs that need it stay Pending saying so. */
        vmlet_inventory_add(mgr->env.inv, o);
        /* So that deleting it through the API names the file that holds it. */
        if (o->kind == VMLET_KIND_VMBDA)
          g_hash_table_replace(mgr->env.inv->attachment_sources,
                               g_strdup_printf("%s/%s", o->attachment->meta.namespace,
                                               o->attachment->meta.name),
                               g_strdup(path));
        if (o->kind == VMLET_KIND_SECRET && o->secret->refused)
          g_ptr_array_add(mgr->problems, g_strdup(o->secret->refused));
        continue;
      }
      g_autofree char *key = key_for(o->vm->meta.namespace, o->vm->meta.name);
      const char *other = g_hash_table_lookup(seen, key);
      if (other) {
        g_ptr_array_add(mgr->problems,
                        g_strdup_printf("%s: VirtualMachine %s is already defined in %s; this "
                                        "definition is ignored", path, key, other));
        continue;
      }
      VmletVm *vm = ensure_vm(mgr, o->vm->meta.namespace, o->vm->meta.name);
      vmlet_vm_set_spec(vm, o->vm, path, NULL);
      g_hash_table_insert(seen, g_steal_pointer(&key), g_strdup(path));
      LoadedVm *l = g_new0(LoadedVm, 1);
      l->vm = g_object_ref(vm);
      l->spec = vm_spec_ref(o->vm);
      l->warnings = warnings_for_item(file_warnings, path, j);
      g_ptr_array_add(loaded, l);
    }
  }
}

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
static void distribute_attachments(VmletManager *mgr, gboolean retry)
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
static void refresh_attachments(VmletManager *mgr)
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
    g_signal_emit(mgr, signals[SIGNAL_ATT_CHANGED], 0, v);
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
    g_signal_emit(mgr, signals[SIGNAL_ATT_REMOVED], 0, id, slash + 1);
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

static void add_to_inventory(VmletManager *mgr, VmletAttachment *att, const char *source)
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
  add_to_inventory(mgr, att, source);
  distribute_attachments(mgr, FALSE);
  refresh_attachments(mgr);
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

static void reload(VmletManager *mgr)
{
  g_clear_handle_id(&mgr->reload_timer, g_source_remove);
  mgr->reloading = TRUE;
  mgr->env.defer_sync = TRUE;
  g_ptr_array_set_size(mgr->problems, 0);
  vmlet_inventory_free(mgr->env.inv);
  mgr->env.inv = vmlet_node_inventory(mgr->env.node, mgr->problems, NULL);
  GHashTableIter pending;
  gpointer pv;
  g_hash_table_iter_init(&pending, mgr->att_pending);
  while (g_hash_table_iter_next(&pending, NULL, &pv)) {
    VmletAttachment *att = pv;
    g_autofree char *id = g_strdup_printf("%s/%s", att->meta.namespace, att->meta.name);
    if (!g_hash_table_contains(mgr->env.inv->attachments, id)) {
      g_autofree char *file = g_str_equal(att->meta.namespace, VMLET_DEFAULT_NAMESPACE)
                                  ? g_strdup_printf("%s.json", att->meta.name)
                                  : g_strdup_printf("%s.%s.json", att->meta.namespace,
                                                    att->meta.name);
      g_autofree char *path = g_build_filename(mgr->env.node->config_dir, "attachments.d", file,
                                               NULL);
      add_to_inventory(mgr, att, path);
    }
  }
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GPtrArray) loaded = g_ptr_array_new_with_free_func(loaded_vm_free);
  load_vms(mgr, seen, loaded);
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
    g_autofree char *key = key_for(vmlet_vm_get_namespace(vm), vmlet_vm_get_name(vm));
    if (!g_hash_table_contains(seen, key))
      vmlet_vm_delete(vm);
  }
  g_ptr_array_unref(all);
  all = vmlet_manager_list(mgr);
  for (guint i = 0; i < all->len; i++)
    vmlet_vm_reconcile(all->pdata[i]);
  distribute_attachments(mgr, TRUE);
  mgr->reloading = FALSE;
  refresh_attachments(mgr);
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
    g_ptr_array_add(mgr->problems, g_strdup_printf("%s: cannot watch: %s", path, error->message));
    return;
  }
  g_signal_connect(mon, "changed", G_CALLBACK(on_dir_changed), mgr);
  g_ptr_array_add(mgr->monitors, mon);
}

void vmlet_manager_start(VmletManager *mgr)
{
  const VmletNode *node = mgr->env.node;
  /* Adopt first: a VM with a live QEMU must be known before any reconcile can start it. */
  g_autoptr(GPtrArray) records = vmlet_vm_record_list(node->state_dir);
  for (guint i = 0; i < records->len; i++) {
    g_autoptr(GError) error = NULL;
    VmletVmRecord *rec = vmlet_vm_record_load(records->pdata[i], &error);
    if (!rec) {
      g_ptr_array_add(mgr->problems, g_strdup(error->message));
      continue;
    }
    VmletVm *vm = ensure_vm(mgr, rec->namespace, rec->name);
    vmlet_vm_adopt(vm, rec);
  }
  static const char *const subdirs[] = {"vms.d", "classes.d", "disks.d", "images.d",
                                        "secrets.d", "attachments.d"};
  for (gsize i = 0; i < G_N_ELEMENTS(subdirs); i++) {
    g_autofree char *dir = g_build_filename(node->config_dir, subdirs[i], NULL);
    /* Secrets' directory is private like the Secrets themselves. */
    g_mkdir_with_parents(dir, g_str_equal(subdirs[i], "secrets.d") ? 0700 : 0750);
    watch_dir(mgr, dir);
  }
  vmlet_manager_reload(mgr);
}
