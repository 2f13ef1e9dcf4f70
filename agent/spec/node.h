/* Node settings: /etc/vmlet/vmlet.conf (GKeyFile), every key optional. */
#pragma once

#include <glib.h>

typedef enum {
  VMLET_ACCEL_AUTO, /* KVM when /dev/kvm is usable, else TCG; resolved before rendering */
  VMLET_ACCEL_KVM,
  VMLET_ACCEL_TCG,
} VmletAccel;

/* How the VMs' cgroups are made (cgroup.h); AUTO is resolved when the daemon starts. */
typedef enum {
  VMLET_CGROUP_AUTO,     /* systemd when PID 1 is systemd, else cgroupfs v2, else v1 */
  VMLET_CGROUP_SYSTEMD,  /* a transient scope per VM over sd-bus */
  VMLET_CGROUP_FS_V2,
  VMLET_CGROUP_FS_V1,
  VMLET_CGROUP_NONE,     /* no limits: development only, QEMU stays in the agent's cgroup */
} VmletCgroupManagerKind;

/* What coreFraction means for the CPU quota (resources.h). */
typedef enum {
  VMLET_CPU_LIMIT_GUARANTEE, /* DVP: weight from cores x fraction, quota = cores */
  VMLET_CPU_LIMIT_CAP,       /* Proxmox cpulimit: quota = cores x fraction */
} VmletCpuLimitMode;

/* [migration]: live migration between peers (agent/migrate). Off unless the group is
 * present, so a node without certificates never listens. */
typedef struct {
  gboolean enabled;
  char *listen_address; /* the peer API's address (IP) */
  guint port;           /* the peer API's port; peers' default too */
  char *cert_dir;       /* QEMU's x509 layout: ca-cert.pem, server-*.pem, client-*.pem */
  guint stream_port_min, stream_port_max; /* for QEMU's migration streams and NBD */
  guint64 bandwidth;    /* bytes per second for one migration (QEMU's max-bandwidth) */
  guint downtime_ms;    /* QEMU's downtime-limit to start from */
  guint outbound, inbound; /* migrations at once from and to this node */
  guint progress_timeout_s; /* without progress this long, a migration escalates or fails */
  guint multifd_channels;   /* 0: one TLS stream */
} VmletMigrationSettings;

typedef struct {
  char *name;
  GHashTable *labels;
  char *run_dir;      /* sockets and per-start files: /run/vmlet */
  char *state_dir;    /* persistent state: /var/lib/vmlet */
  char *disk_dir;     /* default VirtualDisk location: <state-dir>/disks */
  char *image_dir;    /* default image location: <state-dir>/images */
  char *config_dir;   /* drop-in directories: /etc/vmlet/{vms,disks,images,classes}.d */
  char *profiles_dir; /* built-in classes (qemu-profiles) */
  char *qemu_binary;
  VmletAccel accel;
  char *ovmf_code, *ovmf_vars;                 /* EFI */
  char *ovmf_code_secboot, *ovmf_vars_secboot; /* EFIWithSecureBoot */
  char *qemu_user;    /* QEMU runs as this user; "" = the agent's own user */
  VmletCgroupManagerKind cgroup_manager;
  char *slice;        /* systemd: the slice of the VMs' scopes */
  char *cgroup_parent; /* cgroupfs: absolute, or relative to the agent's own cgroup */
  VmletCpuLimitMode cpu_limit;
  VmletMigrationSettings migration;
} VmletNode;

VmletNode *vmlet_node_new_default(void);
void vmlet_node_free(VmletNode *node);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletNode, vmlet_node_free)

/* Loads a node config file over the defaults. Unknown groups or keys are errors, since a
 * misspelt key would otherwise silently leave a default in force. */
VmletNode *vmlet_node_load(const char *path, GError **error);

/* The settings file to load: given (a -c/--config), else VMLET_SYSCONFDIR/vmlet.conf when it
 * exists, else NULL for the built-in defaults. The one place the default path is spelled,
 * so vmlet and vmletd cannot read different files. */
const char *vmlet_node_config_path(const char *given);

/* Replaces VMLET_ACCEL_AUTO by what this host can do (the one impure step before render). */
gboolean vmlet_kvm_usable(const char *sysfs_module_dir);
void vmlet_node_resolve_accel(VmletNode *node);
const char *vmlet_accel_name(VmletAccel accel);
const char *vmlet_cgroup_manager_name(VmletCgroupManagerKind kind);
const char *vmlet_cpu_limit_name(VmletCpuLimitMode mode);

/* The drop-in vmletd writes for an object made through its API:
 * <config-dir>/<dir>/NAME.json in the default namespace, NS.NAME.json in others (a dot
 * cannot occur in either, so the name is unambiguous). */
char *vmlet_node_dropin_path(const VmletNode *node, const char *dir, const char *ns,
                             const char *name);

/* node-migration.c: the [migration] group, read by vmlet_node_load. */
void vmlet_node_migration_defaults(VmletMigrationSettings *m);
void vmlet_node_migration_clear(VmletMigrationSettings *m);
gboolean vmlet_node_migration_known(const char *key);
gboolean vmlet_node_migration_load(VmletMigrationSettings *m, const char *path, GKeyFile *kf,
                                   GError **error);
