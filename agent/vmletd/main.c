/* vmletd: the per-node daemon. Option parsing only; the work is in agent-core. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon.h"
#include "node.h"
#include "vmlet-config.h"

int main(int argc, char **argv)
{
  /* GLib 2.74's slice allocator keeps freed blocks in magazines of its own, so what a
   * reload frees never leaves the daemon (about 1 MiB of RSS with 100 VMs); through malloc,
   * manager.c's malloc_trim returns it (GLib >= 2.76 always uses malloc). GSlice reads
   * G_SLICE during the libraries' constructors, before main: so the daemon sets it and
   * executes itself once more (same pid, so systemd and sd_notify see no difference). */
  if (!getenv("G_SLICE") && setenv("G_SLICE", "always-malloc", 1) == 0)
    execv("/proc/self/exe", argv); /* on failure, run with GSlice as it is */
  setlocale(LC_ALL, "");
  g_autofree char *config = NULL;
  VmletDaemonOptions opts = {.api_group = g_strdup("vmlet")};
  GOptionEntry entries[] = {
      {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config,
       "node settings (default /etc/vmlet/vmlet.conf if present)", "FILE"},
      {"socket", 0, 0, G_OPTION_ARG_FILENAME, &opts.socket_path,
       "API socket (default <run-dir>/vmletd.sock)", "PATH"},
      {"api-group", 0, 0, G_OPTION_ARG_STRING, &opts.api_group,
       "group whose members may use the API (default vmlet)", "GROUP"},
      {NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- run VMs from drop-ins");
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "vmletd: %s\n", error->message);
    return 2;
  }
  if (!config && g_file_test(VMLET_SYSCONFDIR "/vmlet.conf", G_FILE_TEST_EXISTS))
    config = g_strdup(VMLET_SYSCONFDIR "/vmlet.conf");
  VmletNode *node = config ? vmlet_node_load(config, &error) : vmlet_node_new_default();
  if (!node) {
    fprintf(stderr, "vmletd: %s\n", error->message);
    return 1;
  }
  if (!g_file_test(node->profiles_dir, G_FILE_TEST_IS_DIR)) {
    g_free(node->profiles_dir);
    node->profiles_dir = g_strdup(VMLET_SOURCE_PROFILES_DIR);
  }
  vmlet_node_resolve_accel(node);
  int rc = vmlet_daemon_run(node, &opts);
  g_free(opts.socket_path);
  g_free(opts.api_group);
  return rc;
}
