/* The daemon's one logging edge (docs/CONVENTIONS.md: library code fills a GError, the daemon logs
 * once, here).
 *
 * When journald is reachable (/run/systemd/journal/socket, or $VMLET_JOURNAL_SOCKET when
 * set) each message is one datagram of the journal's native protocol, written here without
 * libsystemd: MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=vmletd and, for a message about one
 * VM, VMLET_VM=<namespace>.<name>, so `journalctl VMLET_VM=default.linux-vm` shows one VM's
 * history. Otherwise (a terminal, a container, journald down) one line on stderr:
 * "<level>: [<vm>] <message>". */
#pragma once

#include <glib.h>
#include <stdarg.h>
#include <syslog.h>

/* A log message is a sentence or an error chain, not a data dump: a longer one (say a
 * runaway QEMU stderr pasted in) is cut here, at a character boundary, and marked "...". */
#define VMLET_LOG_MAX_MESSAGE (64 * 1024)

/* namespace (63) + '.' + name (63) with room to spare; a longer one is cut. */
#define VMLET_LOG_MAX_VM 256

/* priority is LOG_ERR .. LOG_DEBUG; more severe values are logged as LOG_ERR (journald
 * broadcasts LOG_EMERG to every terminal: nothing in one agent is an emergency of the
 * whole host) and larger values as LOG_DEBUG. vm is "namespace.name" or NULL. */
void vmlet_log(int priority, const char *vm, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
void vmlet_logv(int priority, const char *vm, const char *fmt, va_list ap) G_GNUC_PRINTF(3, 0);
