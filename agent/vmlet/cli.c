/* vmlet's command table: the dispatcher walks it and usage() prints it, so a command cannot
 * be runnable without being listed, or listed without being runnable (crun's commands[]).
 * Exit status: 0 ok, 1 invalid input or failure, 2 usage. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "commands.h"
#include "vmlet-config.h"

typedef struct {
  const char *name;
  const char *const *aliases; /* NULL-terminated, or NULL; not listed in usage */
  const char *synopsis;       /* the arguments after the name, as usage shows them */
  const char *summary;        /* one line */
  int (*run)(int argc, char **argv);
} VmletCommand;

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const char *const version_aliases[] = {"--version", NULL};
static const char *const help_aliases[] = {"--help", "-h", NULL};

/* In usage order. */
static const VmletCommand commands[] = {
    {"get", NULL, "[vm|vmbda|vmop|node] [NAME] [-o wide|json|jsonpath={...}] [-w]",
     "list VMs, attachments, operations; the node", vmlet_cmd_get},
    {"describe", NULL, "NAME", "spec, status, conditions, operations", vmlet_cmd_describe},
    {"start", NULL, "NAME", "start a VM (a VirtualMachineOperation)", vmlet_cmd_start},
    {"stop", NULL, "NAME [--force]", "stop a VM (gracefully unless --force)", vmlet_cmd_stop},
    {"restart", NULL, "NAME [--force]", "stop and start a VM", vmlet_cmd_restart},
    {"evict", NULL, "NAME [--force] [--wait] [--timeout DURATION]",
     "live-migrate a VM to any suitable peer node", vmlet_cmd_evict},
    {"migrate", NULL, "NAME [--to NODE] [--force] [--wait] [--timeout DURATION]",
     "live-migrate a VM, to NODE if given", vmlet_cmd_migrate},
    {"drain", NULL, "[--force] [--dry-run] [--timeout DURATION]",
     "maintenance: cordon the node, live-migrate its VMs to peers", vmlet_cmd_drain},
    {"uncordon", NULL, "", "end maintenance: VMs may start here again", vmlet_cmd_uncordon},
    {"apply", NULL, "-f FILE", "create or update VMs and vmbdas; create vmops",
     vmlet_cmd_apply},
    {"create", NULL, "-f FILE", "create VMs, vmbdas, vmops (the guide's Evict)",
     vmlet_cmd_create},
    {"delete", NULL, "[vm|vmbda|vmop] NAME", "delete a VM, vmbda, or vmop (cancels its migration)",
     vmlet_cmd_delete},
    {"attach", NULL, "VM --disk|--image|--cluster-image NAME [--name N] [--wait]",
     "hot-plug a disk or image (a vmbda)", vmlet_cmd_attach},
    {"detach", NULL, "(VM --disk|--image|--cluster-image NAME | --name N) [--wait]",
     "unplug a disk or image (delete the vmbda)", vmlet_cmd_detach},
    {"pause", NULL, "NAME", "stop the VM's vCPUs", vmlet_cmd_pause},
    {"unpause", NULL, "NAME", "resume the VM's vCPUs", vmlet_cmd_unpause},
    {"patch", NULL, "NAME --type merge -p JSON", "change a VM (kubectl patch --type merge)",
     vmlet_cmd_patch},
    {"edit", NULL, "NAME", "change a VM in $EDITOR (validated before saving)", vmlet_cmd_edit},
    {"render", NULL, "FILE", "print the QEMU command line for a VirtualMachine",
     vmlet_cmd_render},
    {"validate", NULL, "FILE...", "check drop-ins", vmlet_cmd_validate},
    {"version", version_aliases, "", "print the version", cmd_version},
    {"help", help_aliases, "[COMMAND]", "this list, or a command's options", cmd_help},
};

/* A synopsis wider than this puts its summary on the next line, so that one long synopsis
 * does not push every summary to the right edge. */
#define SUMMARY_COLUMN_MAX 24

static char *command_line(const VmletCommand *c)
{
  return *c->synopsis ? g_strdup_printf("%s %s", c->name, c->synopsis) : g_strdup(c->name);
}

static void usage(FILE *f)
{
  int column = 0;
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
    g_autofree char *line = command_line(&commands[i]);
    int len = (int)strlen(line);
    if (len <= SUMMARY_COLUMN_MAX && len > column)
      column = len;
  }
  fprintf(f, "Usage: vmlet COMMAND [OPTIONS]\n\nCommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
    g_autofree char *line = command_line(&commands[i]);
    if ((int)strlen(line) > column)
      fprintf(f, "  %s\n  %-*s  %s\n", line, column, "", commands[i].summary);
    else
      fprintf(f, "  %-*s  %s\n", column, line, commands[i].summary);
  }
  fprintf(f, "\nRun `vmlet COMMAND --help` for a command's options.\n");
}

static const VmletCommand *find_command(const char *word)
{
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
    const VmletCommand *c = &commands[i];
    if (g_str_equal(word, c->name) || (c->aliases && g_strv_contains(c->aliases, word)))
      return c;
  }
  return NULL;
}

static int unknown_command(const char *word)
{
  fprintf(stderr, "vmlet: unknown command \"%s\"\n", word);
  usage(stderr);
  return EXIT_USAGE;
}

/* Arguments after version were always ignored; parsing is there for --help. */
static int cmd_version(int argc, char **argv)
{
  g_autoptr(GOptionContext) ctx = g_option_context_new("- print the version");
  g_option_context_set_ignore_unknown_options(ctx, TRUE);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "vmlet version: %s\n", error->message);
    return EXIT_USAGE;
  }
  printf("vmlet %s\n", VMLET_VERSION);
  return 0;
}

/* help [COMMAND]: the list, or that command's own --help (GOption prints it and exits). */
static int cmd_help(int argc, char **argv)
{
  if (argc < 2) {
    usage(stdout);
    return 0;
  }
  const VmletCommand *c = find_command(argv[1]);
  if (!c)
    return unknown_command(argv[1]);
  if (c->run == cmd_help) {
    usage(stdout);
    return 0;
  }
  char *help_argv[] = {(char *)c->name, (char *)"--help", NULL};
  return c->run(2, help_argv);
}

int vmlet_cli_main(int argc, char **argv)
{
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const VmletCommand *c = find_command(argv[1]);
  if (!c)
    return unknown_command(argv[1]);
  /* The command sees its own name, not the alias typed: GOption's --help prints argv[0]. */
  argv[1] = (char *)c->name;
  return c->run(argc - 1, argv + 1);
}
