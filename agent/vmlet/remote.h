/* vmlet subcommands that talk to vmletd: get, describe, start, stop, restart, apply, delete,
 * patch, edit, attach, detach, pause, unpause. */
#include <glib.h>
#pragma once

int vmlet_cmd_get(int argc, char **argv);
int vmlet_cmd_describe(int argc, char **argv);
int vmlet_cmd_operation(const char *type, int argc, char **argv);
int vmlet_cmd_apply(int argc, char **argv);
int vmlet_cmd_delete(int argc, char **argv);
int vmlet_cmd_patch(int argc, char **argv);
int vmlet_cmd_edit(int argc, char **argv);
int vmlet_cmd_attach(int argc, char **argv);
int vmlet_cmd_detach(int argc, char **argv);
int vmlet_cmd_pause(gboolean pause, int argc, char **argv);
