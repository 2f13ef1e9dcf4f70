/* The DVP VirtualMachine object (virtualization.deckhouse.io/v1alpha2), validated.
 *
 * A VmSpec is an immutable value once parsed: defaults applied, every field checked. The
 * class-dependent checks (sizing policies) and references to disks and images are resolved
 * later, by the planner, because they need other objects. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"
#include "meta.h"

#define VM_MAX_CORES 248
#define VM_MAX_BLOCK_DEVICES 16
#define VM_MAX_USER_DATA_BYTES 2048
#define VM_DEFAULT_TERMINATION_GRACE_SECONDS 60

typedef enum {
  VM_RUN_POLICY_ALWAYS_ON_UNLESS_STOPPED_MANUALLY,
  VM_RUN_POLICY_ALWAYS_ON,
  VM_RUN_POLICY_MANUAL,
  VM_RUN_POLICY_ALWAYS_OFF,
} VmRunPolicy;

typedef enum {
  VM_RESTART_APPROVAL_MANUAL,
  VM_RESTART_APPROVAL_AUTOMATIC,
} VmRestartApproval;

/* DVP's liveMigrationPolicy: whether a migration may slow the guest down (QEMU's
 * auto-converge throttles its vCPUs) to finish, and what the operation's force changes. */
typedef enum {
  VM_MIGRATION_ALWAYS_SAFE,   /* never throttled; force refused */
  VM_MIGRATION_PREFER_SAFE,   /* default: throttled only with force */
  VM_MIGRATION_ALWAYS_FORCED, /* always throttled; force: false refused */
  VM_MIGRATION_PREFER_FORCED, /* throttled unless force: false */
} VmMigrationPolicy;

typedef enum {
  VM_BOOTLOADER_BIOS,
  VM_BOOTLOADER_EFI,
  VM_BOOTLOADER_EFI_SECURE_BOOT,
} VmBootloader;

typedef enum {
  VM_OS_GENERIC,
  VM_OS_WINDOWS,
} VmOsType;

typedef enum {
  VM_BLOCK_VIRTUAL_DISK,
  VM_BLOCK_VIRTUAL_IMAGE,
  VM_BLOCK_CLUSTER_VIRTUAL_IMAGE,
} VmBlockKind;

typedef enum {
  VM_PROVISIONING_NONE,
  VM_PROVISIONING_USER_DATA,
  VM_PROVISIONING_USER_DATA_REF,
  VM_PROVISIONING_SYSPREP_REF,
} VmProvisioningType;

typedef enum {
  VM_SELECTOR_IN,
  VM_SELECTOR_NOT_IN,
  VM_SELECTOR_EXISTS,
  VM_SELECTOR_DOES_NOT_EXIST,
  VM_SELECTOR_GT,
  VM_SELECTOR_LT,
} VmSelectorOperator;

typedef struct {
  VmBlockKind kind;
  char *name;
} VmBlockDeviceRef;

typedef struct {
  char *key;
  VmSelectorOperator op;
  GStrv values;
} VmSelectorRequirement;

/* One nodeSelectorTerm: all requirements must match (terms are ORed). */
typedef struct {
  GPtrArray *requirements; /* VmSelectorRequirement * */
} VmSelectorTerm;

typedef struct {
  gint refcount;
  VmletMeta meta;
  char *class_name;
  guint cores;
  guint core_fraction; /* percent, 1..100 */
  guint64 memory_bytes;
  GPtrArray *block_devices; /* VmBlockDeviceRef *, in boot order */
  VmProvisioningType provisioning;
  char *user_data;           /* inline cloud-init, UserData only */
  char *provisioning_secret; /* Secret name for UserDataRef / SysprepRef */
  VmRunPolicy run_policy;
  VmRestartApproval restart_approval;
  VmMigrationPolicy migration_policy;
  VmBootloader bootloader;
  VmOsType os_type;
  gboolean paravirtualization; /* spec.enableParavirtualization, default true */
  guint termination_grace_seconds;
  GHashTable *node_selector;  /* never NULL */
  GPtrArray *required_terms;  /* VmSelectorTerm *; empty when no required node affinity */
  char *ip_address_name;      /* NULL when absent */
  JsonNode *spec_json;        /* .spec as given, for diffs and status */
} VmSpec;

/* Parses a VirtualMachine object. Returns NULL when d has errors; warnings (unknown or
 * inert fields) are recorded either way. */
VmSpec *vm_spec_parse(JsonObject *root, VmletDiag *d);
VmSpec *vm_spec_ref(VmSpec *spec);
void vm_spec_unref(VmSpec *spec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmSpec, vm_spec_unref)

const char *vm_block_kind_name(VmBlockKind kind);
const char *vm_run_policy_name(VmRunPolicy policy);

/* Whether this node's labels satisfy spec.nodeSelector and the required node affinity.
 * When not, *why (if given) says which rule failed. */
gboolean vm_spec_matches_node(const VmSpec *spec, GHashTable *node_labels, char **why);
