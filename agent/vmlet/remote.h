/* What the commands that talk to vmletd share: their common options, the client, one
 * request with its failure printed once, and lookups in vmletd's replies. Each command
 * lives in the file of its concern: get.c, ops.c, apply.c, attach.c. */
#pragma once

#include <json-glib/json-glib.h>

#include "client.h"

#define API "/apis/virtualization.deckhouse.io/v1alpha2"

/* --socket, -c/--config, -n/--namespace: every remote command takes them. */
typedef struct {
  char *socket;
  char *config;
  char *namespace;
} RemoteOptions;

void remote_options_clear(RemoteOptions *o);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(RemoteOptions, remote_options_clear)

/* Adds the common entries, then the command's own (extra may be NULL). */
void remote_add_entries(GOptionContext *ctx, RemoteOptions *o, const GOptionEntry *extra);

/* Parses the options and checks the count of positional arguments; FALSE after printing
 * why (the command then exits with EXIT_USAGE). */
gboolean remote_parse(GOptionContext *ctx, const char *cmd, int *argc, char ***argv,
                      int min_args, int max_args);

/* The client for a command (its namespace defaulted), or NULL after printing why. */
VmletClient *remote_open(const char *cmd, RemoteOptions *o);

/* One request: 0 with *out set (out may be NULL) when vmletd answers with status ok, else
 * the problem is printed once and the exit code returned. */
int remote_call(const char *cmd, VmletClient *c, const char *method, const char *path,
                const char *body, guint ok, JsonNode **out);

/* GET of one object: 0 with *out set (NULL when vmletd answers 404), else the problem is
 * printed once and the exit code returned. */
int remote_get(const char *cmd, VmletClient *c, const char *path, JsonNode **out);

/* Prints a Kubernetes Status error from vmletd; returns the exit code. */
int remote_report(const char *cmd, JsonNode *reply, guint status);

/* PUTs a VirtualMachineBlockDeviceAttachment and prints kubectl's "created"/"unchanged"
 * line: 0, or the exit code after printing the problem. */
int remote_put_vmbda(const char *cmd, VmletClient *c, const char *ns, const char *name,
                     const char *body);

/* The warnings vmletd keeps in a VM's status.warnings: "Warning: ..." on stderr. */
void remote_print_warnings(JsonNode *vm);

/* The string at o.a (b NULL) or o.a.b, or NULL when absent or not a string. */
const char *remote_str(JsonObject *o, const char *a, const char *b);
