/* vms.d: each drop-in read into its VMs, and read again only when the file changed. */
#include "manager-private.h"

#include <string.h>

#include "meta.h"
#include "objects.h"
#include "strutil.h"
#include "vmrecord.h"

void mgr_dropin_free(gpointer p)
{
  Dropin *c = p;
  if (c->objs)
    g_ptr_array_unref(c->objs);
  g_ptr_array_unref(c->warnings);
  g_free(c->error);
  g_free(c);
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


void mgr_loaded_vm_free(gpointer p)
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

void mgr_load_vms(VmletManager *mgr, GHashTable *seen, GPtrArray *loaded)
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
      g_autofree char *key = mgr_key_for(VMLET_DEFAULT_NAMESPACE, name);
      if (g_hash_table_contains(seen, key))
        continue;
      VmletVm *vm = mgr_ensure_vm(mgr, VMLET_DEFAULT_NAMESPACE, name);
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
      g_autofree char *key = mgr_key_for(o->vm->meta.namespace, o->vm->meta.name);
      const char *other = g_hash_table_lookup(seen, key);
      if (other) {
        g_ptr_array_add(mgr->problems,
                        g_strdup_printf("%s: VirtualMachine %s is already defined in %s; this "
                                        "definition is ignored", path, key, other));
        continue;
      }
      VmletVm *vm = mgr_ensure_vm(mgr, o->vm->meta.namespace, o->vm->meta.name);
      vmlet_vm_set_spec(vm, o->vm, path, NULL);
      /* Migrated away from a drop-in that could not be put aside (a List): held. */
      g_autofree char *moved = vmlet_vm_tombstone_read(mgr->env.node->state_dir,
                                                       o->vm->meta.namespace, o->vm->meta.name);
      if (moved)
        vmlet_vm_hold(vm, "MigratedAway", moved);
      g_hash_table_insert(seen, g_steal_pointer(&key), g_strdup(path));
      LoadedVm *l = g_new0(LoadedVm, 1);
      l->vm = g_object_ref(vm);
      l->spec = vm_spec_ref(o->vm);
      l->warnings = warnings_for_item(file_warnings, path, j);
      g_ptr_array_add(loaded, l);
    }
  }
}

