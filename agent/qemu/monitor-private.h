/* The monitor's insides, shared by monitor.c (the VM's commands and events),
 * monitor-query.c (queries) and monitor-migrate.c (migration's). Nothing else includes
 * this header. */
#pragma once

#include "monitor.h"

/* What a reply is turned into before the caller sees it. */
typedef enum {
  REPLY_EMPTY,   /* {}: TRUE */
  REPLY_STATUS,  /* query-status: VmletRunStatus */
  REPLY_NAMED,   /* [{KEY: ..., VALUE: ...}]: a table */
  REPLY_VALUE,   /* a scalar: the JsonNode, its type checked by the finish */
  REPLY_OBJECT,  /* an object: the JsonNode, read by the finish */
  REPLY_ARRAY,   /* an array of at most VMLET_MONITOR_MAX_ENTRIES: the JsonNode */
} ReplyKind;

typedef struct {
  ReplyKind kind;
  const char *key, *value; /* REPLY_NAMED: the members to take (value NULL: "") */
} Reply;

extern const Reply monitor_reply_empty;

/* Sends command with args (may be NULL, not modified) and turns the reply into what reply
 * says; the GTask's source object is mon and its tag is tag. */
void monitor_call(VmletMonitor *mon, gpointer tag, const char *command, JsonObject *args,
                  const Reply *reply, GCancellable *cancellable, GAsyncReadyCallback callback,
                  gpointer user_data);
JsonObject *monitor_args1(const char *key, const char *value);
/* The index of name in names, else fallback (an unknown value is never an error: a newer
 * QEMU may add states). */
guint monitor_lookup(const char *const *names, guint n, const char *name, guint fallback);
/* migration_names, for monitor-migrate.c. */
VmletMigrationStatus monitor_migration_status(const char *name);
