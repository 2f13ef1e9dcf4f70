/* One QEMU's QMP as vmlet uses it: a typed function per command vmlet sends, and QEMU's
 * events as typed signals, over the transport of qmp.h (libvirt's qemu_monitor_json.c, kept
 * small). Callers never write command names or pick events out of raw JSON.
 *
 * Commands are asynchronous (GAsyncReadyCallback, the monitor as source object); those
 * whose reply is an empty object share vmlet_monitor_finish(). QEMU is untrusted input:
 * every reply is checked for its shape before it is used, and bounded by qmp.h.
 *
 * Signals (emitted in the order QEMU sent the events, interleaved with replies):
 *   "shutdown"       (gboolean guest, const char *reason)  SHUTDOWN: guest is TRUE when the
 *                    guest powered itself off (or answered the ACPI button)
 *   "stop", "resume" ()                                     STOP / RESUME: vCPUs paused/run
 *   "device-deleted" (const char *device, const char *path) DEVICE_DELETED; device is NULL
 *                    for the second event QEMU sends for a virtio device's backend
 *   "migration"      (gint VmletMigrationStatus)            MIGRATION (capability events)
 *   "block-job-ready" (const char *job)                     BLOCK_JOB_READY: a mirror is in
 *                    sync and stays so
 *   "job-status"     (const char *job, const char *status)  JOB_STATUS_CHANGE
 *   "closed"         (const GError *error)                  the connection ended */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "qmp.h"

#define VMLET_TYPE_MONITOR (vmlet_monitor_get_type())
G_DECLARE_FINAL_TYPE(VmletMonitor, vmlet_monitor, VMLET, MONITOR, GObject)

/* QEMU's RunState (query-status "status"), the values vmlet acts on. */
typedef enum {
  VMLET_RUN_STATE_OTHER,     /* any state vmlet has no use for (debug, io-error, ...) */
  VMLET_RUN_STATE_PRELAUNCH, /* -S: not started yet */
  VMLET_RUN_STATE_RUNNING,
  VMLET_RUN_STATE_PAUSED,    /* QMP stop */
  VMLET_RUN_STATE_SHUTDOWN,  /* the guest powered off; -no-shutdown keeps QEMU */
  VMLET_RUN_STATE_INMIGRATE, /* -incoming: waiting for or receiving a migration */
  VMLET_RUN_STATE_POSTMIGRATE, /* the source after a completed migration */
  VMLET_RUN_STATE_FINISH_MIGRATE,
} VmletRunState;

typedef struct {
  VmletRunState state;
  gboolean running; /* vCPUs running */
} VmletRunStatus;

/* QEMU's MigrationStatus (MIGRATION event, query-migrate "status"). */
typedef enum {
  VMLET_MIGRATION_NONE,
  VMLET_MIGRATION_SETUP,
  VMLET_MIGRATION_ACTIVE,
  VMLET_MIGRATION_PRE_SWITCHOVER,
  VMLET_MIGRATION_DEVICE,
  VMLET_MIGRATION_COMPLETED,
  VMLET_MIGRATION_FAILED,
  VMLET_MIGRATION_CANCELLING,
  VMLET_MIGRATION_CANCELLED,
  VMLET_MIGRATION_OTHER, /* postcopy-*, colo, wait-unplug ...: not used by vmlet */
} VmletMigrationStatus;

/* Wraps an established connection (takes a reference). */
VmletMonitor *vmlet_monitor_new(VmletQmp *qmp);
/* Connects to QEMU's QMP socket (greeting, qmp_capabilities) and wraps it. */
void vmlet_monitor_connect_async(const char *socket_path, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
VmletMonitor *vmlet_monitor_connect_finish(GAsyncResult *result, GError **error);

gboolean vmlet_monitor_is_closed(VmletMonitor *mon);
void vmlet_monitor_close(VmletMonitor *mon);
/* QEMU's version from the greeting, e.g. "7.2.22". */
const char *vmlet_monitor_get_version(VmletMonitor *mon);

/* ---- commands whose reply is {} (finish with vmlet_monitor_finish) ---- */
void vmlet_monitor_cont(VmletMonitor *mon, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_stop(VmletMonitor *mon, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_system_powerdown(VmletMonitor *mon, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_quit(VmletMonitor *mon, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data);
/* props: the node's JSON (qemu-devices.c builds it, the same object as -blockdev). */
void vmlet_monitor_blockdev_add(VmletMonitor *mon, JsonObject *props, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_blockdev_del(VmletMonitor *mon, const char *node_name,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
/* props: the device's JSON (the same object as -device). */
void vmlet_monitor_device_add(VmletMonitor *mon, JsonObject *props, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data);
void vmlet_monitor_device_del(VmletMonitor *mon, const char *id, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_monitor_finish(VmletMonitor *mon, GAsyncResult *result, GError **error);

/* QMP's error classes vmlet tells apart (QEMU 7.2's desc strings, as its monitor sends
 * them): a device_del or qom-get of a device that is not there; a blockdev-del of a node
 * that is not there. */
gboolean vmlet_monitor_error_is_device_not_found(const GError *error);
gboolean vmlet_monitor_error_is_node_not_found(const GError *error);

/* ---- queries ---- */
void vmlet_monitor_query_status(VmletMonitor *mon, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
gboolean vmlet_monitor_query_status_finish(VmletMonitor *mon, GAsyncResult *result,
                                           VmletRunStatus *out, GError **error);

/* qom-list PATH: child name -> QOM type ("child<virtio-blk-pci>"), at most
 * VMLET_MONITOR_MAX_ENTRIES. */
#define VMLET_MONITOR_MAX_ENTRIES 4096
void vmlet_monitor_qom_list(VmletMonitor *mon, const char *path, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
GHashTable *vmlet_monitor_qom_list_finish(VmletMonitor *mon, GAsyncResult *result,
                                          GError **error);

/* qom-get PATH PROPERTY of a string or an integer property. */
void vmlet_monitor_qom_get(VmletMonitor *mon, const char *path, const char *property,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data);
char *vmlet_monitor_qom_get_string_finish(VmletMonitor *mon, GAsyncResult *result,
                                          GError **error);
gboolean vmlet_monitor_qom_get_int_finish(VmletMonitor *mon, GAsyncResult *result, gint64 *out,
                                          GError **error);

/* query-named-block-nodes (flat): the set of node names (name -> ""). */
void vmlet_monitor_query_block_nodes(VmletMonitor *mon, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
GHashTable *vmlet_monitor_query_block_nodes_finish(VmletMonitor *mon, GAsyncResult *result,
                                                   GError **error);

/* The machine QEMU runs, versioned ("pc-q35-7.2" for -machine q35): qom-get /machine type,
 * without QOM's "-machine" suffix. */
void vmlet_monitor_query_machine(VmletMonitor *mon, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
char *vmlet_monitor_query_machine_finish(VmletMonitor *mon, GAsyncResult *result,
                                         GError **error);

const char *vmlet_run_state_name(VmletRunState state);
const char *vmlet_migration_status_name(VmletMigrationStatus status);
