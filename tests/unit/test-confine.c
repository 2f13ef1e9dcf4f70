/* QEMU's confinement seen from outside: the probe tests/confine/try-syscall.c is started
 * exactly as vmletd starts QEMU (vmlet_proc_spawn with a VmletConfine) and reports what
 * the kernel says about it. Every system call vmlet's filter denies must fail with EPERM;
 * a control run with the same user and capabilities but no filter shows that those EPERMs
 * come from the filter, not from the missing privileges. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "confine.h"
#include "process.h"
#include "vmlet-error.h"

/* Runs the probe under c and returns its output lines. */
static GHashTable *run_probe(const VmletConfine *c, const char *const *syscalls)
{
  g_autofree char *out = g_strdup_printf("%s/vmlet-probe-%d.txt", g_get_tmp_dir(), (int)getpid());
  g_unlink(out);
  int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  g_assert_cmpint(fd, >=, 0);
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  g_ptr_array_add(argv, (gpointer)g_getenv("VMLET_PROBE"));
  for (guint i = 0; syscalls && syscalls[i]; i++)
    g_ptr_array_add(argv, (gpointer)syscalls[i]);
  g_ptr_array_add(argv, NULL);
  /* An open descriptor without close-on-exec: the probe must not see it. */
  int leak = open("/dev/null", O_RDONLY);
  VmletSpawnOptions opts = {.confine = c, .gated = TRUE};
  VmletProcId id;
  int gate = -1;
  g_autoptr(GError) error = NULL;
  g_assert_true(vmlet_proc_spawn((const char *const *)argv->pdata, fd, &opts, &id, &gate, &error));
  g_assert_no_error(error);
  close(leak);
  close(fd);
  vmlet_proc_release(gate, TRUE);
  int status = 0;
  g_assert_cmpint(waitpid(id.pid, &status, 0), ==, id.pid);
  g_autofree char *text = NULL;
  g_assert_true(g_file_get_contents(out, &text, NULL, NULL));
  g_test_message("%s", text);
  g_assert_true(WIFEXITED(status));
  g_assert_cmpint(WEXITSTATUS(status), ==, 0);
  g_unlink(out);
  /* "syscall NAME R ERRNO" -> "R ERRNO"; "status Key:\tvalue" -> value; fd N -> N;
   * "env X=Y" -> X=Y. */
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  GString *fds = g_string_new(NULL), *env = g_string_new(NULL);
  for (guint i = 0; lines[i]; i++) {
    g_auto(GStrv) f = g_strsplit(lines[i], " ", 3);
    if (g_strv_length(f) < 2)
      continue;
    if (g_str_equal(f[0], "syscall") && f[2])
      g_hash_table_insert(h, g_strdup(f[1]), g_strdup(f[2]));
    else if (g_str_equal(f[0], "status")) {
      g_auto(GStrv) kv = g_strsplit(lines[i] + 7, ":", 2);
      g_hash_table_insert(h, g_strdup(kv[0]), g_strdup(g_strstrip(kv[1])));
    } else if (g_str_equal(f[0], "fd"))
      g_string_append_printf(fds, "%s%s", fds->len ? " " : "", f[1]);
    else if (g_str_equal(f[0], "env"))
      g_string_append_printf(env, "%s%s", env->len ? "\n" : "", lines[i] + 4);
  }
  g_hash_table_insert(h, g_strdup("fds"), g_string_free(fds, FALSE));
  g_hash_table_insert(h, g_strdup("env"), g_string_free(env, FALSE));
  return h;
}

static gboolean can_confine(void)
{
  if (geteuid() != 0) {
    g_test_skip("confinement drops to another user: needs root");
    return FALSE;
  }
  return TRUE;
}

static void assert_no_privileges(GHashTable *h)
{
  static const char *const caps[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
  for (gsize i = 0; i < G_N_ELEMENTS(caps); i++)
    g_assert_cmpstr(g_hash_table_lookup(h, caps[i]), ==, "0000000000000000");
  g_assert_cmpstr(g_hash_table_lookup(h, "NoNewPrivs"), ==, "1");
  g_assert_cmpstr(g_hash_table_lookup(h, "Umask"), ==, "0077");
  g_assert_cmpstr(g_hash_table_lookup(h, "fds"), ==, "0 1 2");
  g_assert_cmpstr(g_hash_table_lookup(h, "env"), ==,
                  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
}

static void test_unprivileged_user(void)
{
  if (!can_confine())
    return;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletConfine) c = vmlet_confine_new("nobody", &error);
  g_assert_no_error(error);
  struct passwd *pw = getpwnam("nobody");
  g_assert_nonnull(pw);
  g_assert_true(vmlet_confine_changes_user(c));
  g_assert_cmpuint(vmlet_confine_uid(c), ==, pw->pw_uid);
  g_autoptr(GHashTable) h = run_probe(c, vmlet_confine_denied_syscalls());
  g_autofree char *ids = g_strdup_printf("%u\t%u\t%u\t%u", pw->pw_uid, pw->pw_uid, pw->pw_uid,
                                         pw->pw_uid);
  g_assert_cmpstr(g_hash_table_lookup(h, "Uid"), ==, ids);
  g_autofree char *gids = g_strdup_printf("%u\t%u\t%u\t%u", pw->pw_gid, pw->pw_gid, pw->pw_gid,
                                          pw->pw_gid);
  g_assert_cmpstr(g_hash_table_lookup(h, "Gid"), ==, gids);
  /* The supplementary groups are the user's own, not root's. */
  g_autofree char *groups = g_strdup_printf("%u", pw->pw_gid);
  g_assert_cmpstr(g_hash_table_lookup(h, "Groups"), ==, groups);
  assert_no_privileges(h);
  g_assert_cmpstr(g_hash_table_lookup(h, "Seccomp"), ==, "2");
  g_assert_cmpstr(g_hash_table_lookup(h, "Seccomp_filters"), ==, "1");
  /* The exact errno for each denied system call. */
  guint n = 0;
  for (const char *const *s = vmlet_confine_denied_syscalls(); *s; s++) {
    const char *got = g_hash_table_lookup(h, *s);
    g_assert_nonnull(got);
    if (g_str_has_prefix(got, "absent"))
      continue;
    g_autofree char *want = g_strdup_printf("-1 %d", EPERM);
    if (!g_str_equal(got, want))
      g_error("%s: expected \"%s\" (EPERM), found \"%s\"", *s, want, got);
    n++;
  }
  g_assert_cmpuint(n, >=, 50);
}

/* The same user and capabilities without the filter: these calls do not fail with EPERM,
 * so the EPERMs above are the filter's doing. */
static void test_control_without_filter(void)
{
  if (!can_confine())
    return;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletConfine) c = vmlet_confine_new("nobody", &error);
  g_assert_no_error(error);
  vmlet_confine_without_filter(c);
  const char *const calls[] = {"unshare", "ptrace", "chroot", "capset", "setns", NULL};
  g_autoptr(GHashTable) h = run_probe(c, calls);
  g_assert_cmpstr(g_hash_table_lookup(h, "Seccomp"), ==, "0");
  g_assert_cmpstr(g_hash_table_lookup(h, "unshare"), ==, "0 0");
  g_autofree char *esrch = g_strdup_printf("-1 %d", ESRCH); /* pid 0 is not our tracee */
  g_autofree char *efault = g_strdup_printf("-1 %d", EFAULT);
  g_autofree char *einval = g_strdup_printf("-1 %d", EINVAL);
  g_assert_cmpstr(g_hash_table_lookup(h, "ptrace"), ==, esrch);
  g_assert_cmpstr(g_hash_table_lookup(h, "chroot"), ==, efault);
  g_assert_cmpstr(g_hash_table_lookup(h, "capset"), ==, efault);
  g_assert_cmpstr(g_hash_table_lookup(h, "setns"), ==, einval);
}

/* user= (empty): QEMU keeps the agent's uid 0 but no capability survives the exec. */
static void test_root_without_capabilities(void)
{
  if (!can_confine())
    return;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletConfine) c = vmlet_confine_new("", &error);
  g_assert_no_error(error);
  g_assert_false(vmlet_confine_changes_user(c));
  const char *const calls[] = {"mount", "setuid", NULL};
  g_autoptr(GHashTable) h = run_probe(c, calls);
  g_assert_cmpstr(g_hash_table_lookup(h, "Uid"), ==, "0\t0\t0\t0");
  assert_no_privileges(h);
  g_autofree char *eperm = g_strdup_printf("-1 %d", EPERM);
  g_assert_cmpstr(g_hash_table_lookup(h, "mount"), ==, eperm);
}

static void test_unknown_user(void)
{
  if (!can_confine())
    return;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletConfine) c = vmlet_confine_new("no-such-vmlet-user", &error);
  g_assert_null(c);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
  g_assert_cmpstr(error->message, ==,
                  "QEMU's user \"no-such-vmlet-user\" does not exist (systemd-sysusers creates "
                  "it from vmlet.sysusers; or set [qemu] user= in vmlet.conf)");
  g_clear_error(&error);
  c = vmlet_confine_new("root", &error);
  g_assert_null(c);
  g_assert_cmpstr(error->message, ==,
                  "QEMU's user \"root\" is uid 0: expected an unprivileged account");
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/confine/unprivileged-user", test_unprivileged_user);
  g_test_add_func("/confine/control-without-filter", test_control_without_filter);
  g_test_add_func("/confine/root-without-capabilities", test_root_without_capabilities);
  g_test_add_func("/confine/unknown-user", test_unknown_user);
  return g_test_run();
}
