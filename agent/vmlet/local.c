/* vmlet render and validate: the node's view of drop-ins, computed here with agent-core
 * and no vmletd. Errors go to stderr once, here at the edge. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "node.h"
#include "qemu-argv.h"
#include "render.h"
#include "vmlet-config.h"
#include "yamljson.h"

typedef struct {
  char *config;
  char *accel;
  char *profiles;
} CommonOptions;

static void common_options_clear(CommonOptions *o);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(CommonOptions, common_options_clear)

static void common_options_clear(CommonOptions *o)
{
  g_free(o->config);
  g_free(o->accel);
  g_free(o->profiles);
}

static GOptionEntry *common_entries(CommonOptions *o)
{
  static GOptionEntry entries[4];
  GOptionEntry e[] = {
      {"config", 'c', 0, G_OPTION_ARG_FILENAME, &o->config,
       "node settings file (default /etc/vmlet/vmlet.conf if present)", "FILE"},
      {"accel", 0, 0, G_OPTION_ARG_STRING, &o->accel, "override [qemu] accel: auto, kvm, tcg",
       "ACCEL"},
      {"profiles", 0, 0, G_OPTION_ARG_FILENAME, &o->profiles,
       "directory of VirtualMachineClass profiles", "DIR"},
      {NULL},
  };
  memcpy(entries, e, sizeof(e));
  return entries;
}

static void print_lines(GPtrArray *lines, const char *prefix)
{
  for (guint i = 0; i < lines->len; i++)
    fprintf(stderr, "%s%s\n", prefix, (const char *)lines->pdata[i]);
}

/* The node as the command sees it: config file, then command-line overrides. */
static VmletNode *load_node(const CommonOptions *o, GError **error)
{
  g_autoptr(VmletNode) node = NULL;
  const char *config = vmlet_node_config_path(o->config);
  node = config ? vmlet_node_load(config, error) : vmlet_node_new_default();
  if (!node)
    return NULL;
  if (o->profiles) {
    g_free(node->profiles_dir);
    node->profiles_dir = g_strdup(o->profiles);
  } else if (!g_file_test(node->profiles_dir, G_FILE_TEST_IS_DIR)) {
    /* Not installed: run from the source tree. */
    g_free(node->profiles_dir);
    node->profiles_dir = g_strdup(VMLET_SOURCE_PROFILES_DIR);
  }
  if (o->accel) {
    if (g_str_equal(o->accel, "kvm"))
      node->accel = VMLET_ACCEL_KVM;
    else if (g_str_equal(o->accel, "tcg"))
      node->accel = VMLET_ACCEL_TCG;
    else if (g_str_equal(o->accel, "auto"))
      node->accel = VMLET_ACCEL_AUTO;
    else {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                  "--accel: expected auto, kvm or tcg, found \"%s\"", o->accel);
      return NULL;
    }
  }
  vmlet_node_resolve_accel(node);
  return g_steal_pointer(&node);
}

int vmlet_cmd_render(int argc, char **argv)
{
  g_auto(CommonOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("FILE - print the QEMU command line");
  g_option_context_set_summary(
      ctx, "Prints the QEMU command line for a VirtualMachine drop-in, one argument per line,\n"
           "like `virsh domxml-to-native`. FILE may be - for standard input, and may be a\n"
           "List that also holds the VM's VirtualDisks and VirtualImages.");
  g_option_context_add_main_entries(ctx, common_entries(&o), NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || argc != 2) {
    fprintf(stderr, "vmlet render: %s\n", error ? error->message : "expected one FILE");
    return EXIT_USAGE;
  }
  g_autoptr(VmletNode) node = load_node(&o, &error);
  if (!node) {
    fprintf(stderr, "vmlet render: %s\n", error->message);
    return 1;
  }
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(VmletInventory) inv = vmlet_node_inventory(node, problems, warnings);
  print_lines(problems, "vmlet render: skipped drop-in: ");
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!vmlet_read_manifest(argv[1], &data, &len, &error)) {
    fprintf(stderr, "vmlet render: %s\n", error->message);
    return 1;
  }
  const char *source = g_str_equal(argv[1], "-") ? "<stdin>" : argv[1];
  g_autoptr(VmPlan) plan =
      vmlet_plan_document(node, inv, source, data, len, warnings, &error);
  print_lines(warnings, "warning: ");
  if (!plan) {
    fprintf(stderr, "%s\n", error->message);
    return 1;
  }
  g_auto(GStrv) args = vm_qemu_argv(plan);
  for (guint i = 0; args[i]; i++)
    printf("%s\n", args[i]);
  return fflush(stdout) == 0 ? 0 : 1;
}

int vmlet_cmd_validate(int argc, char **argv)
{
  g_auto(CommonOptions) o = {0};
  g_autoptr(GOptionContext) ctx = g_option_context_new("FILE... - check drop-ins");
  g_option_context_set_summary(ctx, "Checks drop-in documents of any kind vmlet reads and, for "
                                    "VirtualMachines,\nresolves them against this node's "
                                    "classes, disks and images.");
  g_option_context_add_main_entries(ctx, common_entries(&o), NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || argc < 2) {
    fprintf(stderr, "vmlet validate: %s\n", error ? error->message : "expected FILE...");
    return EXIT_USAGE;
  }
  g_autoptr(VmletNode) node = load_node(&o, &error);
  if (!node) {
    fprintf(stderr, "vmlet validate: %s\n", error->message);
    return 1;
  }
  g_autoptr(VmletInventory) inv = vmlet_node_inventory(node, NULL, NULL);
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    g_autofree char *data = NULL;
    gsize len = 0;
    if (!vmlet_read_manifest(argv[i], &data, &len, &err)) {
      fprintf(stderr, "%s\n", err->message);
      rc = 1;
      continue;
    }
    g_autoptr(GPtrArray) objs = vmlet_objects_parse(argv[i], data, len, warnings, &err);
    gboolean ok = objs != NULL;
    for (guint j = 0; ok && j < objs->len; j++) {
      VmletObject *obj = objs->pdata[j];
      if (obj->kind != VMLET_KIND_VIRTUAL_MACHINE)
        vmlet_inventory_add(inv, obj);
    }
    for (guint j = 0; ok && j < objs->len; j++) {
      VmletObject *obj = objs->pdata[j];
      if (obj->kind != VMLET_KIND_VIRTUAL_MACHINE)
        continue;
      g_autoptr(VmletDiag) d = vmlet_diag_new(argv[i]);
      /* Resolving is the check; the plan itself is not needed. */
      vm_plan_unref(vm_plan_build(obj->vm, inv, node, d));
      g_auto(GStrv) w = vmlet_diag_warning_lines(d);
      for (guint k = 0; w[k]; k++)
        g_ptr_array_add(warnings, g_strdup(w[k]));
      ok = vmlet_diag_check(d, &err);
    }
    print_lines(warnings, "warning: ");
    if (ok) {
      printf("%s: valid\n", argv[i]);
    } else {
      fprintf(stderr, "%s\n", err->message);
      rc = 1;
    }
  }
  return rc;
}
