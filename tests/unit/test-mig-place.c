/* Where the destination of a migration places a disk the source announces
 * (vm_mig_place, agent/runtime/vm-migrate-place.c), with the source as what it is: a peer
 * whose manifests are untrusted. A spec.local.path survives only on proven shared storage
 * (the source's marker token beside it) and only for a written disk; otherwise the disk
 * goes to this node's default location and the manifest kept says so. */
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

#include "mig-error.h"
#include "objects.h"
#include "plan.h"
#include "vm-migrate.h"

#define ID "0b7c2c0e-3f43-4d8e-9d6f-5a0d3f1c2b11"
#define TOKEN "5f0e8a1c9b7d4e2f8a6c3b1d0e9f7a5c"

typedef struct {
  char *dir;
  VmletNode *node;
  VmletInventory *inv;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp("vmlet-place-XXXXXX", NULL);
  g_assert_nonnull(f->dir);
  f->node = vmlet_node_new_default();
  g_free(f->node->disk_dir);
  f->node->disk_dir = g_build_filename(f->dir, "disks", NULL);
  g_free(f->node->image_dir);
  f->node->image_dir = g_build_filename(f->dir, "images", NULL);
  f->inv = vmlet_inventory_new();
}

static void teardown(Fixture *f, gconstpointer data)
{
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
  g_assert_cmpint(system(cmd), ==, 0);
  vmlet_inventory_free(f->inv);
  vmlet_node_free(f->node);
  g_free(f->dir);
}

static JsonNode *manifest(const char *kind, const char *ns, const char *name,
                          const char *local)
{
  g_autofree char *text = g_strdup_printf(
      "{\"apiVersion\": \"virtualization.deckhouse.io/v1alpha2\", \"kind\": \"%s\", "
      "\"metadata\": {\"name\": \"%s\"%s%s%s}%s%s%s}",
      kind, name, ns ? ", \"namespace\": \"" : "", ns ? ns : "", ns ? "\"" : "",
      local ? ", \"spec\": {\"local\": " : "", local ? local : "", local ? "}" : "");
  g_autoptr(GError) error = NULL;
  JsonNode *n = json_from_string(text, &error);
  g_assert_no_error(error);
  return n;
}

/* Places it; returns the path QEMU would get (NULL when refused, error set). */
static char *placed(Fixture *f, VmBlockKind kind, const char *ns, const char *name,
                    JsonNode *m, JsonNode **keep, char **note, GError **error)
{
  g_autoptr(VmletBlockObject) obj = vm_mig_place(f->inv, kind, ns, name, m, ID, TOKEN, keep,
                                                 note, error);
  if (!obj)
    return NULL;
  g_autoptr(VmPlanDisk) pd = vm_plan_attachment_disk(f->node, obj, NULL);
  return g_strdup(pd->path);
}

static const char *kept_path(JsonNode *keep)
{
  JsonObject *spec = json_object_get_object_member(json_node_get_object(keep), "spec");
  JsonObject *local = spec ? json_object_get_object_member(spec, "local") : NULL;
  return local && json_object_has_member(local, "path")
             ? json_object_get_string_member(local, "path")
             : NULL;
}

/* A path outside the disk directory, no marker beside it: the default location, the path
 * gone from the manifest kept (the format it implied stays), and the inventory holds the
 * object as placed. */
static void test_foreign_path(Fixture *f, gconstpointer data)
{
  const char *evil = data;
  g_autofree char *local = g_strdup_printf("{\"path\": \"%s\"}", evil);
  g_autoptr(JsonNode) m = manifest("VirtualDisk", "prod", "root", local);
  g_autoptr(JsonNode) keep = NULL;
  g_autofree char *note = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = placed(f, VM_BLOCK_VIRTUAL_DISK, "prod", "root", m, &keep, &note,
                                 &error);
  g_assert_no_error(error);
  gboolean raw = g_str_has_suffix(evil, ".img");
  g_autofree char *want = g_build_filename(f->node->disk_dir, "prod",
                                           raw ? "root.img" : "root.qcow2", NULL);
  g_assert_cmpstr(path, ==, want);
  g_assert_nonnull(keep);
  g_assert_null(kept_path(keep));
  g_assert_nonnull(note);
  g_assert_nonnull(strstr(note, evil));
  VmletBlockObject *known = vmlet_inventory_block(f->inv, VM_BLOCK_VIRTUAL_DISK, "prod", "root");
  g_assert_nonnull(known);
  g_assert_null(known->path);
  g_assert_cmpint(known->format, ==, raw ? VMLET_FORMAT_RAW : VMLET_FORMAT_QCOW2);
  /* The manifest kept loads as the object used: a restart places the disk the same way. */
  g_autofree char *text = json_to_string(keep, FALSE);
  g_autoptr(GPtrArray) again = vmlet_objects_parse("kept", text, strlen(text), NULL, &error);
  g_assert_no_error(error);
  VmletObject *o = again->pdata[0];
  g_assert_null(o->block->path);
  g_assert_cmpint(o->block->format, ==, known->format);
}

/* The source's marker beside the file: shared storage, the path kept as it was. A marker
 * with another token, or for another migration, proves nothing. */
static void test_shared_path(Fixture *f, gconstpointer data)
{
  g_autofree char *shared = g_build_filename(f->dir, "nfs", NULL);
  g_assert_cmpint(g_mkdir(shared, 0700), ==, 0);
  g_autofree char *disk = g_build_filename(shared, "root.qcow2", NULL);
  g_autofree char *marker = vm_mig_marker_path(disk, ID);
  g_assert_true(g_file_set_contents(marker, data ? data : TOKEN, -1, NULL));
  g_autofree char *local = g_strdup_printf("{\"path\": \"%s\"}", disk);
  g_autoptr(JsonNode) m = manifest("VirtualDisk", NULL, "root", local);
  g_autoptr(JsonNode) keep = NULL;
  g_autofree char *note = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = placed(f, VM_BLOCK_VIRTUAL_DISK, "default", "root", m, &keep, &note,
                                 &error);
  g_assert_no_error(error);
  if (data) {
    g_assert_cmpstr(path, !=, disk);
    g_assert_null(kept_path(keep));
    return;
  }
  g_assert_cmpstr(path, ==, disk);
  g_assert_cmpstr(kept_path(keep), ==, disk);
  g_assert_null(note);
}

/* A read-only image this node does not own: only at its default image location, marker or
 * not (the source leaves none beside images). */
static void test_image_not_owned(Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) m = manifest("VirtualImage", NULL, "tools",
                                   "{\"path\": \"/etc/shadow\", \"format\": \"iso\"}");
  g_autoptr(JsonNode) keep = NULL;
  g_autofree char *note = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = placed(f, VM_BLOCK_VIRTUAL_IMAGE, "default", "tools", m, &keep,
                                 &note, &error);
  g_assert_no_error(error);
  g_autofree char *want = g_build_filename(f->node->image_dir, "default", "tools.iso", NULL);
  g_assert_cmpstr(path, ==, want);
  g_assert_null(kept_path(keep));
  g_autoptr(JsonNode) cm = manifest("ClusterVirtualImage", NULL, "base",
                                    "{\"path\": \"/dev/sda\", \"format\": \"raw\"}");
  g_autoptr(JsonNode) ckeep = NULL;
  g_autofree char *cnote = NULL;
  g_autofree char *cpath = placed(f, VM_BLOCK_CLUSTER_VIRTUAL_IMAGE, "default", "base", cm,
                                  &ckeep, &cnote, &error);
  g_assert_no_error(error);
  g_autofree char *cwant = g_build_filename(f->node->image_dir, "base.img", NULL);
  g_assert_cmpstr(cpath, ==, cwant);
}

/* This node's own object wins, whatever the source sends; nothing is kept to journal. */
static void test_own_object(Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) mine = manifest("VirtualImage", NULL, "tools",
                                      "{\"path\": \"/srv/images/tools.iso\"}");
  g_autofree char *text = json_to_string(mine, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) objs = vmlet_objects_parse("mine", text, strlen(text), NULL, &error);
  g_assert_no_error(error);
  vmlet_inventory_add(f->inv, objs->pdata[0]);
  g_autoptr(JsonNode) m = manifest("VirtualImage", NULL, "tools",
                                   "{\"path\": \"/etc/shadow\", \"format\": \"iso\"}");
  g_autoptr(JsonNode) keep = NULL;
  g_autofree char *note = NULL;
  g_autofree char *path = placed(f, VM_BLOCK_VIRTUAL_IMAGE, "default", "tools", m, &keep,
                                 &note, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(path, ==, "/srv/images/tools.iso");
  g_assert_null(keep);
  g_assert_null(note);
}

/* Manifests that are not the disk announced are refused, and nothing is learnt: another
 * name or namespace (it would be placed and, once committed, overwrite that object's
 * drop-in), another kind, a name that is no DNS label (it would reach a path), a relative
 * or unnormalised path. */
static void test_refused(Fixture *f, gconstpointer data)
{
  static const struct {
    const char *kind, *ns, *name, *local;
  } cases[] = {
      {"VirtualDisk", "prod", "other", NULL},
      {"VirtualDisk", "default", "root", NULL},
      {"VirtualImage", "prod", "root", "{\"format\": \"iso\"}"},
      {"VirtualDisk", "prod", "../../etc", NULL},
      {"VirtualDisk", "../..", "root", NULL},
      {"VirtualDisk", "prod", "root", "{\"path\": \"../../etc/shadow\"}"},
      {"VirtualDisk", "prod", "root", "{\"path\": \"/var/lib/vmlet/../../etc/x.qcow2\"}"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(JsonNode) m = manifest(cases[i].kind, cases[i].ns, cases[i].name,
                                     cases[i].local);
    g_autoptr(JsonNode) keep = NULL;
    g_autofree char *note = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *path = placed(f, VM_BLOCK_VIRTUAL_DISK, "prod", "root", m, &keep, &note,
                                   &error);
    g_assert_null(path);
    g_assert_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID);
    g_assert_null(keep);
    g_assert_null(vmlet_inventory_block(f->inv, VM_BLOCK_VIRTUAL_DISK, "prod", "root"));
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) keep = NULL;
  g_autofree char *note = NULL;
  g_autofree char *path = placed(f, VM_BLOCK_VIRTUAL_DISK, "prod", "root", NULL, &keep, &note,
                                 &error);
  g_assert_null(path);
  g_assert_error(error, VMLET_MIG_ERROR, VMLET_MIG_ERROR_INVALID);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define ADD(path, fn, data) \
  g_test_add("/mig-place/" path, Fixture, data, setup, fn, teardown)
  ADD("foreign-path/etc", test_foreign_path, "/etc/shadow");
  ADD("foreign-path/device", test_foreign_path, "/dev/sda");
  ADD("foreign-path/raw", test_foreign_path, "/root/evil.img");
  ADD("shared-path", test_shared_path, NULL);
  ADD("shared-path/wrong-token", test_shared_path, "ffffffffffffffffffffffffffffffff");
  ADD("image-not-owned", test_image_not_owned, NULL);
  ADD("own-object", test_own_object, NULL);
  ADD("refused", test_refused, NULL);
#undef ADD
  return g_test_run();
}
