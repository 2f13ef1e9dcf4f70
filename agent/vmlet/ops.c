/* vmlet start, stop, restart, evict, migrate (a VirtualMachineOperation each) and pause,
 * unpause (the VM's vCPUs): the commands that change what a VM is doing, not what it is.
 * Also the one builder of an operation's JSON and its creation (operation.h). */
#include <stdio.h>

#include "commands.h"
#include "meta.h"
#include "operation.h"
#include "quantity.h"
#include "remote.h"

JsonNode *vmlet_op_manifest(const VmletOpRequest *r)
{
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "apiVersion");
  json_builder_add_string_value(b, "virtualization.deckhouse.io/v1alpha2");
  json_builder_set_member_name(b, "kind");
  json_builder_add_string_value(b, "VirtualMachineOperation");
  json_builder_set_member_name(b, "spec");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "virtualMachineName");
  json_builder_add_string_value(b, r->vm);
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, r->type);
  json_builder_set_member_name(b, "force");
  json_builder_add_boolean_value(b, r->force);
  if (r->node) {
    /* DVP's spec.migrate.nodeSelector; kubernetes.io/hostname is how a node is named. */
    json_builder_set_member_name(b, "migrate");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "nodeSelector");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "kubernetes.io/hostname");
    json_builder_add_string_value(b, r->node);
    json_builder_end_object(b);
    json_builder_end_object(b);
  }
  json_builder_end_object(b);
  json_builder_end_object(b);
  return json_builder_get_root(b);
}

int vmlet_op_create(const char *cmd, VmletClient *c, const char *ns, const char *body,
                    JsonNode **out)
{
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachineoperations", ns);
  g_autoptr(JsonNode) reply = NULL;
  int rc = remote_call(cmd, c, "POST", path, body, 201, &reply);
  if (rc)
    return rc;
  JsonObject *op = json_node_get_object(reply);
  const char *name = remote_str(op, "metadata", "name");
  printf("virtualmachineoperation.virtualization.deckhouse.io/%s created\n", name);
  fflush(stdout);
  /* Refused by the run policy, the VM's state or the node (no [migration], no peer):
   * created, and already Failed. */
  if (g_strcmp0(remote_str(op, "status", "phase"), "Failed") == 0) {
    const char *reason = remote_str(op, "status", "reason");
    fprintf(stderr, "vmlet %s: %s failed: %s\n", cmd, name, reason ? reason : "no reason given");
    rc = 1;
  }
  if (out)
    *out = g_steal_pointer(&reply);
  return rc;
}

/* One command per operation type; its name is the type in lower case. */
typedef struct {
  const char *type;
  const char *synopsis;   /* GOption's parameter string: "NAME - what it does" */
  const char *force_help; /* NULL: no --force */
  gboolean migration;     /* --wait and --timeout; Migrate also --to */
} OpCommand;

/* Long enough for a large guest's memory over a slow link. It only ends the waiting: a
 * migration that stops progressing fails by itself (progress-timeout, docs/MIGRATION.md). */
#define DEFAULT_WAIT_TIMEOUT "10m"

static const char migration_help[] =
    "Creates the operation and returns. With --wait, prints its progress until it is\n"
    "Completed (exit 0) or Failed (exit 1, with the reason); --timeout only stops the\n"
    "waiting, `vmlet delete vmop NAME` cancels the migration.";

typedef struct {
  gboolean force, wait;
  char *to, *timeout;
} OpOptions;

static void op_options_clear(OpOptions *o)
{
  g_free(o->to);
  g_free(o->timeout);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(OpOptions, op_options_clear)

static void add_op_entries(GOptionContext *ctx, RemoteOptions *ro, const OpCommand *oc,
                           OpOptions *o)
{
  GOptionEntry entries[5] = {{NULL}};
  guint n = 0;
  if (oc->migration && g_str_equal(oc->type, "Migrate"))
    entries[n++] = (GOptionEntry){"to", 0, 0, G_OPTION_ARG_STRING, &o->to,
                                  "the node to move to (default: any suitable peer)", "NODE"};
  if (oc->force_help)
    entries[n++] = (GOptionEntry){"force", 0, 0, G_OPTION_ARG_NONE, &o->force, oc->force_help,
                                  NULL};
  if (oc->migration) {
    entries[n++] = (GOptionEntry){"wait", 0, 0, G_OPTION_ARG_NONE, &o->wait,
                                  "follow the operation until Completed or Failed", NULL};
    entries[n++] = (GOptionEntry){"timeout", 0, 0, G_OPTION_ARG_STRING, &o->timeout,
                                  "how long --wait waits (default " DEFAULT_WAIT_TIMEOUT "; 0: no limit)",
                                  "DURATION"};
  }
  remote_add_entries(ctx, ro, entries);
}

/* --to and --timeout as the request and the wait need them; FALSE after printing why. */
static gboolean check_op_options(const char *cmd, const OpOptions *o, GTimeSpan *timeout)
{
  if (o->to && !vmlet_is_dns1123_subdomain(o->to)) {
    fprintf(stderr, "vmlet %s: --to: \"%s\" is not a node name\n", cmd, o->to);
    return FALSE;
  }
  if (o->timeout && !o->wait) {
    fprintf(stderr, "vmlet %s: --timeout is how long --wait waits; give --wait too\n", cmd);
    return FALSE;
  }
  const char *why = NULL;
  if (!vmlet_duration_parse(o->timeout ? o->timeout : DEFAULT_WAIT_TIMEOUT, timeout, &why)) {
    fprintf(stderr, "vmlet %s: --timeout: expected %s, found \"%s\"\n", cmd, why, o->timeout);
    return FALSE;
  }
  return TRUE;
}

static int operation(const OpCommand *oc, int argc, char **argv)
{
  g_auto(RemoteOptions) ro = {0};
  g_auto(OpOptions) o = {0};
  g_autofree char *cmd = g_ascii_strdown(oc->type, -1);
  g_autoptr(GOptionContext) ctx = g_option_context_new(oc->synopsis);
  if (oc->migration)
    g_option_context_set_summary(ctx, migration_help);
  add_op_entries(ctx, &ro, oc, &o);
  GTimeSpan timeout = 0;
  if (!remote_parse(ctx, cmd, &argc, &argv, 1, 1) || !check_op_options(cmd, &o, &timeout))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = remote_open(cmd, &ro);
  if (!c)
    return 1;
  VmletOpRequest r = {.type = oc->type, .vm = argv[1], .force = o.force, .node = o.to};
  g_autoptr(JsonNode) req = vmlet_op_manifest(&r);
  g_autofree char *body = json_to_string(req, FALSE);
  g_autoptr(JsonNode) op = NULL;
  int rc = vmlet_op_create(cmd, c, ro.namespace, body, &op);
  if (rc || !o.wait)
    return rc;
  return vmlet_op_wait(cmd, c, ro.namespace,
                       remote_str(json_node_get_object(op), "metadata", "name"), timeout);
}

static const char stop_force[] = "no graceful shutdown: stop QEMU at once";
/* DVP's force for Evict: AutoConverge, so that a guest writing faster than the link
 * carries still converges; the VM's liveMigrationPolicy may refuse or imply it. */
static const char migrate_force[] =
    "allow throttling the vCPUs (AutoConverge) so a busy guest converges";

int vmlet_cmd_start(int argc, char **argv)
{
  static const OpCommand oc = {"Start", "NAME - start a VM (a VirtualMachineOperation)", NULL,
                               FALSE};
  return operation(&oc, argc, argv);
}

int vmlet_cmd_stop(int argc, char **argv)
{
  static const OpCommand oc = {"Stop", "NAME - stop a VM (a VirtualMachineOperation)",
                               stop_force, FALSE};
  return operation(&oc, argc, argv);
}

int vmlet_cmd_restart(int argc, char **argv)
{
  static const OpCommand oc = {"Restart", "NAME - restart a VM (a VirtualMachineOperation)",
                               stop_force, FALSE};
  return operation(&oc, argc, argv);
}

int vmlet_cmd_evict(int argc, char **argv)
{
  static const OpCommand oc = {
      "Evict", "NAME - live-migrate a running VM to any suitable peer node (an Evict)",
      migrate_force, TRUE};
  return operation(&oc, argc, argv);
}

int vmlet_cmd_migrate(int argc, char **argv)
{
  static const OpCommand oc = {
      "Migrate", "NAME - live-migrate a running VM, to the node --to names (a Migrate)",
      migrate_force, TRUE};
  return operation(&oc, argc, argv);
}

/* QMP stop / cont through vmletd's pause and unpause subresources. */
static int set_paused(gboolean pause, int argc, char **argv)
{
  const char *cmd = pause ? "pause" : "unpause";
  g_auto(RemoteOptions) o = {0};
  g_autoptr(GOptionContext) ctx =
      g_option_context_new(pause ? "NAME - stop the VM's vCPUs (QMP stop)"
                                 : "NAME - resume a paused VM (QMP cont)");
  remote_add_entries(ctx, &o, NULL);
  if (!remote_parse(ctx, cmd, &argc, &argv, 1, 1))
    return EXIT_USAGE;
  g_autoptr(VmletClient) c = remote_open(cmd, &o);
  if (!c)
    return 1;
  g_autofree char *path = g_strdup_printf(API "/namespaces/%s/virtualmachines/%s/%s",
                                          o.namespace, argv[1], cmd);
  int rc = remote_call(cmd, c, "PUT", path, "", 202, NULL);
  if (rc == 0)
    printf("virtualmachine.virtualization.deckhouse.io/%s %s\n", argv[1],
           pause ? "paused" : "unpaused");
  return rc;
}

int vmlet_cmd_pause(int argc, char **argv)
{
  return set_paused(TRUE, argc, argv);
}

int vmlet_cmd_unpause(int argc, char **argv)
{
  return set_paused(FALSE, argc, argv);
}
