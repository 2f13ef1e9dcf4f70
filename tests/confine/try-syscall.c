/* A probe run under vmlet's confinement (tests/unit/test-confine.c), in the manner of
 * bubblewrap's tests/try-syscall.c: it makes each system call named on its command line
 * with harmless arguments and prints "syscall NAME RESULT ERRNO", then the confinement
 * as the kernel reports it: its /proc/self/status lines, its open descriptors and its
 * environment. It never decides anything itself; the test compares. */
#include <dirent.h>
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

/* In the sanitizer build: LeakSanitizer stops the world with ptrace at exit, which the
 * filter under test denies. The probe allocates nothing worth checking. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
  return "detect_leaks=0";
}

int main(int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    int nr = seccomp_syscall_resolve_name(argv[i]);
    if (nr == __NR_SCMP_ERROR) {
      printf("syscall %s absent 0\n", argv[i]);
      continue;
    }
    long arg0 = 0;
    /* ptrace(0) is PTRACE_TRACEME, which would succeed: ask for an invalid request. */
    if (strcmp(argv[i], "ptrace") == 0)
      arg0 = -1;
    errno = 0;
    long r = syscall(nr, arg0, 0L, 0L, 0L, 0L, 0L);
    printf("syscall %s %ld %d\n", argv[i], r, r == -1 ? errno : 0);
  }
  FILE *f = fopen("/proc/self/status", "re");
  char line[512];
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Groups:", 7) ||
        !strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs:", 11) ||
        !strncmp(line, "Seccomp", 7) || !strncmp(line, "Umask:", 6))
      printf("status %s", line);
  if (f)
    fclose(f);
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
      printf("fd %s\n", e->d_name);
  if (d)
    closedir(d);
  for (char **env = environ; *env; env++)
    printf("env %s\n", *env);
  return 0;
}
