/* vmlet subcommands. Each parses its options, calls agent-core and prints; errors go to
 * stderr once, here at the edge. Exit status: 0 ok, 1 invalid input or failure, 2 usage. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "node.h"
#include "qemu-argv.h"
#include "remote.h"
#include "render.h"
#include "vmlet-config.h"
#include "vmlet-error.h"
#include "yamljson.h"

#define EXIT_USAGE 2

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
  const char *config = o->config;
  if (!config && g_file_test(VMLET_SYSCONFDIR "/vmlet.conf", G_FILE_TEST_EXISTS))
    config = VMLET_SYSCONFDIR "/vmlet.conf";
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

static int cmd_render(int argc, char **argv)
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

static int cmd_validate(int argc, char **argv)
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

static void usage(FILE *f)
{
  fprintf(f, "Usage: vmlet COMMAND [OPTIONS]\n\n"
             "Commands:\n"
             "  get [vm|vmbda] [NAME] [-o wide|json|jsonpath={...}] [-w]  list VMs or attachments\n"
             "  describe NAME              spec, status, conditions, operations\n"
             "  start|stop|restart NAME    create a VirtualMachineOperation (--force)\n"
             "  apply -f FILE              create or update a VM through vmletd\n"
             "  delete [vm|vmbda] NAME     delete a VM created through vmletd, or an attachment\n"
             "  attach VM --disk|--image|--cluster-image NAME [--name N] [--wait]\n"
             "                             hot-plug a disk or image (a vmbda)\n"
             "  detach VM --disk|--image|--cluster-image NAME | detach --name N [--wait]\n"
             "                             unplug it (delete the vmbda)\n"
             "  pause|unpause NAME         stop / resume the VM's vCPUs\n"
             "  patch NAME --type merge -p JSON  change a VM (kubectl patch --type merge)\n"
             "  edit NAME                  change a VM in $EDITOR (validated before saving)\n"
             "  render FILE                print the QEMU command line for a VirtualMachine\n"
             "  validate FILE...           check drop-ins\n"
             "  version           print the version\n\n"
             "Run `vmlet COMMAND --help` for a command's options.\n");
}

int vmlet_cli_main(int argc, char **argv)
{
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (g_str_equal(cmd, "render"))
    return cmd_render(argc - 1, argv + 1);
  if (g_str_equal(cmd, "validate"))
    return cmd_validate(argc - 1, argv + 1);
  if (g_str_equal(cmd, "get"))
    return vmlet_cmd_get(argc - 1, argv + 1);
  if (g_str_equal(cmd, "describe"))
    return vmlet_cmd_describe(argc - 1, argv + 1);
  if (g_str_equal(cmd, "start"))
    return vmlet_cmd_operation("Start", argc - 1, argv + 1);
  if (g_str_equal(cmd, "stop"))
    return vmlet_cmd_operation("Stop", argc - 1, argv + 1);
  if (g_str_equal(cmd, "restart"))
    return vmlet_cmd_operation("Restart", argc - 1, argv + 1);
  if (g_str_equal(cmd, "apply"))
    return vmlet_cmd_apply(argc - 1, argv + 1);
  if (g_str_equal(cmd, "delete"))
    return vmlet_cmd_delete(argc - 1, argv + 1);
  if (g_str_equal(cmd, "patch"))
    return vmlet_cmd_patch(argc - 1, argv + 1);
  if (g_str_equal(cmd, "edit"))
    return vmlet_cmd_edit(argc - 1, argv + 1);
  if (g_str_equal(cmd, "attach"))
    return vmlet_cmd_attach(argc - 1, argv + 1);
  if (g_str_equal(cmd, "detach"))
    return vmlet_cmd_detach(argc - 1, argv + 1);
  if (g_str_equal(cmd, "pause") || g_str_equal(cmd, "unpause"))
    return vmlet_cmd_pause(g_str_equal(cmd, "pause"), argc - 1, argv + 1);
  if (g_str_equal(cmd, "version") || g_str_equal(cmd, "--version")) {
    printf("vmlet %s\n", VMLET_VERSION);
    return 0;
  }
  if (g_str_equal(cmd, "help") || g_str_equal(cmd, "--help") || g_str_equal(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "vmlet: unknown command \"%s\"\n", cmd);
  usage(stderr);
  return EXIT_USAGE;
}
