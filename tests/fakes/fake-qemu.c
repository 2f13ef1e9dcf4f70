/* Stands in for qemu-system-x86_64 in the runtime tests (tests/unit/test-runtime.c): vmletd
 * spawns it exactly as it spawns QEMU (gated, confined, fds 0-2, PATH only), and the tests'
 * fake QMP peer (tests/unit/fake-qmp.c) answers on the VM's QMP socket in its place. It
 * ignores its arguments and waits for a signal:
 *
 *   SIGTERM  exit 0, as QEMU does after `quit` (or a SIGTERM of its own)
 *   SIGUSR1  exit 1, a crash with an exit status
 *   SIGKILL  as it is: killed by signal 9 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t received;

static void on_signal(int sig)
{
  received = sig;
}

int main(int argc, char **argv)
{
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigset_t wanted, waiting;
  sigemptyset(&wanted);
  sigaddset(&wanted, SIGTERM);
  sigaddset(&wanted, SIGUSR1);
  /* Blocked until sigsuspend, so a signal between the check and the wait is not lost. */
  sigprocmask(SIG_BLOCK, &wanted, &waiting);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  /* In qemu.log, for whoever reads a failed test's run dir. */
  printf("fake-qemu: pid %d, %d arguments\n", (int)getpid(), argc - 1);
  fflush(stdout);
  while (!received)
    sigsuspend(&waiting);
  _exit(received == SIGTERM ? 0 : 1);
}
