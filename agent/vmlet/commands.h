/* Every vmlet command's entry point, as the command table in cli.c lists them: argv[0] is
 * the command's name, options and arguments follow. Each returns the exit status: 0 ok,
 * 1 invalid input or failure, EXIT_USAGE for a usage error. */
#pragma once

#define EXIT_USAGE 2

/* local.c: no vmletd needed */
int vmlet_cmd_render(int argc, char **argv);
int vmlet_cmd_validate(int argc, char **argv);

/* get.c */
int vmlet_cmd_get(int argc, char **argv);
int vmlet_cmd_describe(int argc, char **argv);

/* ops.c */
int vmlet_cmd_start(int argc, char **argv);
int vmlet_cmd_stop(int argc, char **argv);
int vmlet_cmd_restart(int argc, char **argv);
int vmlet_cmd_evict(int argc, char **argv);
int vmlet_cmd_migrate(int argc, char **argv);
int vmlet_cmd_pause(int argc, char **argv);
int vmlet_cmd_unpause(int argc, char **argv);

/* apply.c (apply and create send manifests through manifest.c) */
int vmlet_cmd_apply(int argc, char **argv);
int vmlet_cmd_create(int argc, char **argv);
int vmlet_cmd_delete(int argc, char **argv);
int vmlet_cmd_patch(int argc, char **argv);
int vmlet_cmd_edit(int argc, char **argv);

/* drain.c: the node's maintenance mode */
#include "client.h"
int vmlet_cmd_drain(int argc, char **argv);
int vmlet_cmd_uncordon(int argc, char **argv);
/* get node / nodes / no */
gboolean vmlet_is_node_word(const char *word);
/* The node and its drain (output: NULL for the table, or "json"); the exit status. */
int vmlet_get_node(VmletClient *c, const char *output);

/* attach.c */
int vmlet_cmd_attach(int argc, char **argv);
int vmlet_cmd_detach(int argc, char **argv);
