/* vmletd: the manager and its API on one GLib main loop until SIGTERM/SIGINT.
 * Stopping the agent never stops VMs: QEMU runs in its own session, and the next vmletd
 * re-adopts it from the VM's record. */
#pragma once

#include <glib.h>

#include "node.h"

typedef struct {
  char *socket_path; /* default <run-dir>/vmletd.sock */
  char *api_group;   /* members may use the API; NULL: root only */
} VmletDaemonOptions;

/* Takes ownership of node. Returns the process exit status. */
int vmlet_daemon_run(VmletNode *node, const VmletDaemonOptions *opts);
