#include "confine.h"

#include <errno.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <seccomp.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fileio.h"
#include "vmlet-error.h"

#ifndef SECBIT_NOROOT
#define SECBIT_NOROOT (1 << 0)
#define SECBIT_NOROOT_LOCKED (1 << 1)
#endif

#define MAX_GROUPS 64

/* System calls no VM needs, denied with EPERM. QEMU's -sandbox covers obsolete calls,
 * privilege changes, spawning and scheduler/resource control; this list adds what a
 * compromised QEMU would use to reach the host or other processes. Not listed, because
 * QEMU uses them: userfaultfd (post-copy migration), io_uring (aio=io_uring), memfd,
 * mbind (NUMA), prctl, sched_getaffinity. execve stays allowed: the filter is loaded
 * before QEMU itself is executed (QEMU's spawn=deny forbids it afterwards). */
static const char *const denied[] = {
    /* file systems and namespaces: a process that can mount or enter namespaces can
     * change what paths mean to the host */
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    /* the kernel itself */
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "syslog", "quotactl", "iopl", "ioperm",
    /* the host's clock */
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    /* other processes and the kernel's introspection */
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd",
    "kcmp", "perf_event_open", "bpf", "fanotify_init",
    /* keyrings shared with the host */
    "add_key", "request_key", "keyctl",
    /* files by handle (bypasses path permissions), device nodes */
    "open_by_handle_at", "name_to_handle_at", "mknod", "mknodat",
    /* identity: QEMU never changes its user or capabilities */
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "vhangup",
    NULL};

struct _VmletConfine {
  char *user;
  gboolean change_user;
  gboolean root; /* the agent has CAP_SETPCAP etc.: the bounding set can be cleared */
  uid_t uid;
  gid_t gid;
  gid_t groups[MAX_GROUPS];
  int ngroups;
  int last_cap;
  cap_t empty;              /* no capabilities at all */
  struct sock_filter *bpf;  /* the compiled filter, NULL when left out */
  unsigned short bpf_len;
};

const char *const *vmlet_confine_denied_syscalls(void)
{
  return denied;
}

static gboolean lookup_user(VmletConfine *c, const char *user, GError **error)
{
  struct passwd pw, *res = NULL;
  char buf[4096];
  int r = getpwnam_r(user, &pw, buf, sizeof buf, &res);
  if (r != 0 || !res) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND,
                "QEMU's user \"%s\" does not exist%s%s (systemd-sysusers creates it from "
                "vmlet.sysusers; or set [qemu] user= in vmlet.conf)",
                user, r ? ": " : "", r ? g_strerror(r) : "");
    return FALSE;
  }
  if (pw.pw_uid == 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "QEMU's user \"%s\" is uid 0: expected an unprivileged account", user);
    return FALSE;
  }
  c->uid = pw.pw_uid;
  c->gid = pw.pw_gid;
  c->ngroups = MAX_GROUPS;
  if (getgrouplist(user, pw.pw_gid, c->groups, &c->ngroups) < 0) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "QEMU's user \"%s\" is in more than %d groups", user, MAX_GROUPS);
    return FALSE;
  }
  return TRUE;
}

static gboolean compile_filter(VmletConfine *c, GError **error)
{
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "seccomp_init failed");
    return FALSE;
  }
  int r = 0;
  for (int i = 0; denied[i] && r == 0; i++) {
    int nr = seccomp_syscall_resolve_name(denied[i]);
    if (nr == __NR_SCMP_ERROR)
      continue; /* not a system call of this architecture */
    r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
  }
  /* no_new_privs is set by vmlet_confine_apply itself, in its place in the sequence. */
  if (r == 0)
    r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  vmlet_autofd fd = r == 0 ? memfd_create("vmlet-seccomp", MFD_CLOEXEC) : -1;
  if (r == 0 && fd < 0)
    r = -errno;
  if (r == 0)
    r = seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  off_t len = r == 0 ? lseek(fd, 0, SEEK_END) : -1;
  if (r != 0 || len <= 0 || len % sizeof(struct sock_filter) != 0 ||
      len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "compiling the seccomp filter: %s",
                g_strerror(r ? -r : EINVAL));
    return FALSE;
  }
  c->bpf = g_malloc((gsize)len);
  if (pread(fd, c->bpf, (size_t)len, 0) != len) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "reading the seccomp filter: %s",
                g_strerror(errno));
    return FALSE;
  }
  c->bpf_len = (unsigned short)(len / sizeof(struct sock_filter));
  return TRUE;
}

VmletConfine *vmlet_confine_new(const char *user, GError **error)
{
  g_autoptr(VmletConfine) c = g_new0(VmletConfine, 1);
  c->user = g_strdup(user ? user : "");
  c->change_user = c->user[0] != '\0';
  c->root = geteuid() == 0;
  c->last_cap = (int)cap_max_bits() - 1;
  c->empty = cap_init();
  if (!c->empty) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_IO, "cap_init: %s", g_strerror(errno));
    return NULL;
  }
  if (c->change_user && !c->root) {
    g_set_error(error, VMLET_ERROR, VMLET_ERROR_INVALID,
                "running QEMU as \"%s\" needs vmletd to run as root (or set [qemu] user= in "
                "vmlet.conf to keep the agent's own user)",
                c->user);
    return NULL;
  }
  if (c->change_user && !lookup_user(c, c->user, error))
    return NULL;
  if (!compile_filter(c, error))
    return NULL;
  return g_steal_pointer(&c);
}

void vmlet_confine_free(VmletConfine *c)
{
  if (!c)
    return;
  if (c->empty)
    cap_free(c->empty);
  g_free(c->bpf);
  g_free(c->user);
  g_free(c);
}

void vmlet_confine_without_filter(VmletConfine *c)
{
  g_clear_pointer(&c->bpf, g_free);
  c->bpf_len = 0;
}

gboolean vmlet_confine_changes_user(const VmletConfine *c)
{
  return c->change_user;
}

uid_t vmlet_confine_uid(const VmletConfine *c)
{
  return c->change_user ? c->uid : geteuid();
}

gid_t vmlet_confine_gid(const VmletConfine *c)
{
  return c->change_user ? c->gid : getegid();
}

const char *vmlet_confine_user(const VmletConfine *c)
{
  return c->user;
}

gboolean vmlet_confine_in_group(const VmletConfine *c, gid_t gid)
{
  if (gid == vmlet_confine_gid(c))
    return TRUE;
  for (int i = 0; c->change_user && i < c->ngroups; i++)
    if (c->groups[i] == gid)
      return TRUE;
  return FALSE;
}

int vmlet_confine_apply(const VmletConfine *c, const char **step)
{
#define FAIL(what)                                                                             \
  do {                                                                                         \
    *step = what;                                                                              \
    return -errno;                                                                             \
  } while (0)
  if (c->root) {
    /* Root keeps no privilege across exec: with SECBIT_NOROOT a uid-0 exec gains no
     * capabilities, and the cleared bounding set caps whatever could still be gained. */
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) < 0)
      FAIL("prctl(PR_SET_SECUREBITS)");
    for (int cap = 0; cap <= c->last_cap; cap++)
      if (cap_drop_bound((cap_value_t)cap) < 0 && errno != EINVAL)
        FAIL("cap_drop_bound");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    FAIL("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  if (c->change_user) {
    /* Groups first: once the uid has changed, setgroups is no longer permitted. */
    if (setgroups((size_t)c->ngroups, c->groups) < 0)
      FAIL("setgroups");
    if (setresgid(c->gid, c->gid, c->gid) < 0)
      FAIL("setresgid");
    if (setresuid(c->uid, c->uid, c->uid) < 0)
      FAIL("setresuid");
  }
  /* Permitted, effective and inheritable sets emptied (a uid change already cleared
   * them; without one this is what does). */
  if (cap_set_proc(c->empty) < 0)
    FAIL("cap_set_proc");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    FAIL("prctl(PR_SET_NO_NEW_PRIVS)");
  if (c->bpf) {
    struct sock_fprog prog = {.len = c->bpf_len, .filter = c->bpf};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
      FAIL("seccomp(SECCOMP_SET_MODE_FILTER)");
  }
  return 0;
#undef FAIL
}
