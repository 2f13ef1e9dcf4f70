/* vmletd: the per-node daemon. Option parsing only; the work is in agent-core. */
#include <locale.h>
#include <stdio.h>
#include <unistd.h>

#include "daemon.h"
#include "node.h"
#include "vmlet-config.h"

int main(int argc, char **argv)
{
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
  const char *path = vmlet_node_config_path(config);
  VmletNode *node = path ? vmlet_node_load(path, &error) : vmlet_node_new_default();
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
