/* Confinement of QEMU, prepared in the agent and applied in the child before exec.
 *
 * Defence in depth under QEMU's own -sandbox: QEMU runs as an unprivileged user (with its
 * supplementary groups, e.g. kvm), with an empty capability bounding set, no ambient,
 * permitted, effective or inheritable capabilities, no_new_privs, and a seccomp filter of
 * vmlet's that makes the system calls no VM needs fail with EPERM. Everything that can
 * allocate or fail in a complicated way (user lookup, compiling the filter with
 * libseccomp) happens here in the parent; the child only makes async-signal-safe calls. */
#pragma once

#include <glib.h>
#include <sys/types.h>

typedef struct _VmletConfine VmletConfine;

/* user: the account QEMU runs as; "" keeps the agent's own uid and gids (the rest of the
 * confinement still applies). An unknown user is an error saying how to create it. */
VmletConfine *vmlet_confine_new(const char *user, GError **error);
void vmlet_confine_free(VmletConfine *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmletConfine, vmlet_confine_free)

/* Leaves the seccomp filter out (tests: the control run of the syscall probe). */
void vmlet_confine_without_filter(VmletConfine *c);

/* Whether QEMU changes to another user, and which; files QEMU opens are given to it. */
gboolean vmlet_confine_changes_user(const VmletConfine *c);
uid_t vmlet_confine_uid(const VmletConfine *c);
gid_t vmlet_confine_gid(const VmletConfine *c);
const char *vmlet_confine_user(const VmletConfine *c);
/* Whether gid is QEMU's group or one of its supplementary groups. */
gboolean vmlet_confine_in_group(const VmletConfine *c, gid_t gid);

/* In the child, between fork and exec: drops privileges and loads the filter. Returns 0,
 * or a negative errno with *step naming the call that failed (a static string). */
int vmlet_confine_apply(const VmletConfine *c, const char **step);

/* The system calls vmlet's filter denies (NULL-terminated), for tests and documentation. */
const char *const *vmlet_confine_denied_syscalls(void);
