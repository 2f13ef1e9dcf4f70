/* A scratch node for the runtime tests: vmletd's stateful half (VmletManager, the VM
 * runtime, instance.c, attachctl*.c) in the test's process, with the stand-in QEMU
 * (tests/fakes/fake-qemu.c: a real, confined, gated process watched through a pidfd) and
 * one fake QMP peer per VM (fake-qmp.h) listening at the VM's QMP socket.
 *
 * The node lives in a temp dir: config-dir with vms.d, disks.d, attachments.d ..., state
 * dir, run dir; TCG, no cgroups, QEMU keeps the test's uid (still confined). Each VM's fake
 * behaves like QEMU 7.2 unless a test scripts otherwise: query-status "running", qom-get
 * /machine type "pc-q35-7.2-machine", no devices or block nodes, `quit` ends the stand-in
 * (SIGTERM: exit 0), and system_powerdown makes the guest power off (SHUTDOWN guest=true)
 * unless rt_guest_ignores_button. Every wait spins the main loop and gives up after
 * RT_DEADLINE_MS, returning FALSE, so a test asserts on it and never hangs. */
#pragma once

#include <sys/types.h>

#include "fake-qmp.h"
#include "manager.h"

#define RT_DEADLINE_MS 10000

typedef struct _RtNode RtNode;

/* A node in a new temp dir; no manager yet (rt_start). */
RtNode *rt_node_new(void);
/* Ends the manager, kills and reaps every stand-in it saw, removes the temp dir. */
void rt_node_free(RtNode *node);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RtNode, rt_node_free)

const char *rt_root(RtNode *node);
const char *rt_state_dir(RtNode *node);

/* A new VmletManager on the node's dirs, started (adopt, load, reconcile). */
void rt_start(RtNode *node);
/* "vmletd restarts": the manager is finalized (running stand-ins keep running, as QEMUs
 * survive vmletd; their QMP connections close) and a new one started on the same dirs. */
void rt_restart(RtNode *node);
/* Only the first half of rt_restart: vmletd is away until the next rt_start. */
void rt_stop_manager(RtNode *node);
void rt_reload(RtNode *node);
VmletManager *rt_manager(RtNode *node);

/* ---- drop-ins ---- */
/* A VM of class generic, 1 core at 100%, 64Mi, one VirtualDisk (an empty file) named
 * "<name>-root"; spec_extra: more members of .spec as JSON without braces
 * ("\"runPolicy\": \"Manual\""), may be NULL. Also makes the VM's fake QMP peer. */
void rt_write_vm(RtNode *node, const char *name, const char *spec_extra);
void rt_remove_vm(RtNode *node, const char *name);
/* A VirtualDisk drop-in and its (empty) file in the node's disk dir. */
void rt_write_disk(RtNode *node, const char *name);
void rt_write_attachment(RtNode *node, const char *name, const char *vm, const char *disk);
void rt_remove_attachment(RtNode *node, const char *name);

/* ---- the VM, QEMU and its fake ---- */
VmletVm *rt_vm(RtNode *node, const char *name);
FakeQmp *rt_fake(RtNode *node, const char *vm);
/* The guest of vm does not answer the ACPI power button. */
void rt_guest_ignores_button(RtNode *node, const char *vm, gboolean ignores);
/* Kills vm's stand-in with sig (SIGKILL, SIGUSR1: exit 1) and hangs up its QMP, as a
 * dying QEMU's socket closes. */
void rt_crash(RtNode *node, const char *vm, int sig);
/* status.pid of vm, 0 when it has no QEMU. */
pid_t rt_pid(RtNode *node, const char *vm);
/* How many stand-ins (distinct pids) the node has had, across vmletd restarts. */
guint rt_standins(RtNode *node);
/* Whether a stand-in runs (a zombie counts as gone). */
gboolean rt_proc_alive(pid_t pid);
/* The Running condition: status "True"/"False", reason and message (NULL when absent). */
void rt_running_condition(RtNode *node, const char *vm, char **status, char **reason,
                          char **message);
gboolean rt_stopped_manually(RtNode *node, const char *vm);
/* The operation uid of vm: its phase and reason (NULL when absent). */
void rt_op(RtNode *node, const char *vm, const char *uid, char **phase, char **reason);

/* ---- waits (TRUE when it happened within RT_DEADLINE_MS) ---- */
gboolean rt_wait_phase(RtNode *node, const char *vm, VmPhase phase);
gboolean rt_wait_op(RtNode *node, const char *vm, const char *uid, const char *phase);
/* Until fq has received command at least count times in all. */
gboolean rt_wait_command(FakeQmp *fq, const char *command, guint count);
gboolean rt_wait_exit(pid_t pid);
/* Until vm has a QEMU whose pid is not old (0: any). */
gboolean rt_wait_new_pid(RtNode *node, const char *vm, pid_t old);
/* Until vm's pid is not old (0 included: vmletd has seen the exit). */
gboolean rt_wait_pid_changed(RtNode *node, const char *vm, pid_t old);
gboolean rt_wait_gone(RtNode *node, const char *vm);
/* Until pred(data) holds (it is asked again after every main loop iteration). */
typedef gboolean (*RtPredicate)(gpointer data);
gboolean rt_spin_until(RtPredicate pred, gpointer data);
/* Spins the loop for ms, whatever happens (to show that something does not happen). */
void rt_spin(guint ms);
