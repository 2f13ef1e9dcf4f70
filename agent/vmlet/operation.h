/* VirtualMachineOperations from the CLI: the one builder of their JSON (ops.c), their
 * creation as kubectl prints it, and following one to its end (opwait.c). vmletd has no
 * watch stream of operations, so following one polls: a GET over the node's own socket. */
#pragma once

#include "client.h"
#include "table.h"

/* What `vmlet start|stop|restart|evict|migrate` asks for. */
typedef struct {
  const char *type; /* spec.type: Start, Stop, Restart, Evict, Migrate */
  const char *vm;   /* spec.virtualMachineName */
  gboolean force;   /* spec.force */
  const char *node; /* spec.migrate.nodeSelector["kubernetes.io/hostname"], or NULL */
} VmletOpRequest;

/* The operation's JSON, without metadata: vmletd names it "<type>-<vm>-<uid>". */
JsonNode *vmlet_op_manifest(const VmletOpRequest *r);

/* POSTs body (an operation's JSON text) to namespace ns and prints kubectl's
 * "virtualmachineoperation.virtualization.deckhouse.io/NAME created". Returns 0 with the
 * operation in *out (out may be NULL), or 1 after printing why: the request refused, or the
 * operation created already Failed (then its reason, as DVP shows one it cannot carry out;
 * *out is set all the same). */
int vmlet_op_create(const char *cmd, VmletClient *c, const char *ns, const char *body,
                    JsonNode **out);

/* --wait: polls the operation until it is Completed (0, after "... completed") or Failed
 * (1, its reason on stderr), printing a line each time its phase or status.progress
 * changes. Giving up after timeout (0: never), deleted meanwhile, or vmletd gone: 1 with
 * the reason; the operation itself is left alone. */
int vmlet_op_wait(const char *cmd, VmletClient *c, const char *ns, const char *name,
                  GTimeSpan timeout);

/* `vmlet get vmop -w`: the table's header once, then a row for each operation (only the
 * one named only, when it is not NULL) whenever its row changes, until interrupted. */
int vmlet_op_watch(VmletClient *c, const char *ns, const char *only, VmletTableMode mode);
