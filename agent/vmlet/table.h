/* `vmlet get` tables, printed as `kubectl get vm` prints DVP's VirtualMachine (pure
 * functions: JSON and a clock in, text out).
 *
 * The columns are the CRD's printer columns (deckhouse/virtualization,
 * api/core/v1alpha2/virtual_machine.go): NAME PHASE NODE IPADDRESS AGE, and with -o wide
 * NAME PHASE CORES COREFRACTION MEMORY "NEED RESTART" AGENT MIGRATABLE NODE IPADDRESS AGE.
 * The layout is kubectl's tabwriter (minimum width 6, padding 3, spaces): each column as
 * wide as its widest cell plus 3, left-aligned, the last column unpadded. A value that is
 * absent prints as an empty cell, as kubectl prints a printer column whose JSONPath finds
 * nothing (the "<none>" of built-in printers is not used for custom resources). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

typedef enum {
  VMLET_TABLE_NORMAL, /* `vmlet get` */
  VMLET_TABLE_WIDE,   /* `vmlet get -o wide` */
} VmletTableMode;

/* A node runs tens of VMs, not thousands; a list beyond this is not a node's. */
#define VMLET_TABLE_MAX_ROWS 10000

/* vmlet's own bound (kubectl has none): a cell longer than this many characters is cut
 * and ends in "...". Names are at most 63. */
#define VMLET_TABLE_MAX_CELL 256

/* kubectl's AGE: k8s.io/apimachinery/pkg/util/duration.HumanDuration, to the same
 * boundaries: "45s" below 2 minutes, "5m16s" below 10, "79m" below 3 hours, "3h5m" below
 * 8, "12h" below 2 days, "3d4h" below 8, "200d" below 2 years, "3y45d" below 8, then "9y".
 * Up to one second in the future counts as "0s" (clock skew), further is "<invalid>". */
char *vmlet_human_duration(GTimeSpan d);

/* The table of vms (VirtualMachine objects, as `kubectl get vm -o json` items) at time
 * now. Row cells:
 * - NAME metadata.name, PHASE status.phase, CORES spec.cpu.cores, COREFRACTION
 *   spec.cpu.coreFraction, MEMORY spec.memory.size, NODE status.nodeName, IPADDRESS
 *   status.ipAddress: the value as text (a number or boolean printed as JSON would),
 *   empty when absent, null, an object or an array;
 * - NEED RESTART: the status of condition AwaitingRestartToApplyConfiguration (what DVP
 *   prints), else "True" when status.restartAwaitingChanges is a non-empty array, else
 *   "False";
 * - AGENT, MIGRATABLE: the status of condition AgentReady, Migratable; "False" when the
 *   condition is absent (kubectl would print an empty cell; the node knows the answer);
 * - AGE: vmlet_human_duration(now - metadata.creationTimestamp) for an RFC 3339
 *   timestamp, "<unknown>" for the zero time 0001-01-01T00:00:00Z, empty otherwise.
 * A cell is cut at its first line break (then "..."), control characters are shown as ^X
 * (ESC as "^[", as kubectl does), and it is at most VMLET_TABLE_MAX_CELL characters.
 * An empty list gives "" (kubectl prints no header then; the caller says "No resources
 * found"). An element that is not an object is VMLET_ERROR_INVALID; more than
 * VMLET_TABLE_MAX_ROWS elements VMLET_ERROR_TOO_LARGE. */
char *vmlet_table_format_vms(JsonArray *vms, GDateTime *now, VmletTableMode mode,
                             GError **error);

/* `vmlet get vmbda`: the CRD's printer columns of VirtualMachineBlockDeviceAttachment
 * (api/core/v1alpha2/virtual_machine_block_device_attachment.go), as the guide prints them:
 * NAME PHASE "VIRTUAL MACHINE NAME" AGE (metadata.name, status.phase,
 * status.virtualMachineName, metadata.creationTimestamp), with the same cell rules and
 * layout as the VM table. */
char *vmlet_table_format_vmbdas(JsonArray *items, GDateTime *now, GError **error);

/* `vmlet get vmop`: the CRD's printer columns of VirtualMachineOperation
 * (crds/virtualmachineoperations.yaml): NAME PHASE TYPE VIRTUALMACHINE AGE
 * (metadata.name, status.phase, spec.type, spec.virtualMachineName,
 * metadata.creationTimestamp). -o wide adds what vmletd's status holds for a migration:
 * PROGRESS status.progress ("45%"), TARGET status.targetNode, REASON status.reason (why it
 * failed, or how it ended). Same cell rules and layout as the VM table. */
char *vmlet_table_format_vmops(JsonArray *items, GDateTime *now, VmletTableMode mode,
                               GError **error);
