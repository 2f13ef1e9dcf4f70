/* The maintenance state (agent/runtime/cordon.c): the file round trip, every refusal of a
 * bad file naming the file and the JSON path, the VM states' table, the verdict on the
 * reasons an Evict fails with. Pure: a temporary state directory only. */
#include <string.h>

#include <glib/gstdio.h>

#include "cordon.h"
#include "fileio.h"
#include "vmlet-error.h"

static char *state_dir(void)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp("test-cordon-XXXXXX", &error);
  g_assert_no_error(error);
  return dir;
}

static void cleanup(const char *dir)
{
  g_autofree char *path = vmlet_cordon_path(dir);
  g_unlink(path);
  g_rmdir(dir);
}

static void test_absent(void)
{
  g_autofree char *dir = state_dir();
  g_autoptr(GError) error = NULL;
  VmletCordon *c = (VmletCordon *)0x1;
  g_assert_true(vmlet_cordon_load(dir, &c, &error));
  g_assert_no_error(error);
  g_assert_null(c);
  /* Removing what is not there is an uncordon of an uncordoned node: fine. */
  g_assert_true(vmlet_cordon_remove(dir, &error));
  g_assert_no_error(error);
  cleanup(dir);
}

static void test_round_trip(void)
{
  g_autofree char *dir = state_dir();
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletCordon) c = vmlet_cordon_new(1700000000000000);
  c->draining = TRUE;
  c->force = TRUE;
  c->drain_started_us = 1700000000000001;
  CordonVm *a = vmlet_cordon_add(c, "default", "a");
  CordonVm *b = vmlet_cordon_add(c, "prod", "b");
  g_assert_true(vmlet_cordon_add(c, "default", "a") == a);
  g_assert_true(vmlet_cordon_vm_move(a, CORDON_VM_EVICTING, &error));
  a->operation = g_strdup("evacuation-a-1f2e3d4c");
  a->op_uid = g_strdup("1f2e3d4c");
  a->attempts = 2;
  g_assert_true(vmlet_cordon_vm_move(b, CORDON_VM_UNPLACEABLE, &error));
  b->reason = g_strdup("TargetUnschedulable: no peer can take the VM: hv-2: does not match");
  g_assert_true(vmlet_cordon_save(c, dir, &error));
  g_assert_no_error(error);

  g_autoptr(VmletCordon) back = NULL;
  g_assert_true(vmlet_cordon_load(dir, &back, &error));
  g_assert_no_error(error);
  g_assert_nonnull(back);
  g_assert_cmpint(back->since_us, ==, 1700000000000000);
  g_assert_true(back->draining);
  g_assert_true(back->force);
  g_assert_cmpint(back->drain_started_us, ==, 1700000000000001);
  g_assert_cmpint(back->drain_ended_us, ==, 0);
  g_assert_cmpuint(back->vms->len, ==, 2);
  CordonVm *a2 = vmlet_cordon_find(back, "default", "a");
  g_assert_nonnull(a2);
  g_assert_cmpint(a2->state, ==, CORDON_VM_EVICTING);
  g_assert_cmpstr(a2->operation, ==, "evacuation-a-1f2e3d4c");
  /* The uid is this vmletd's: a restarted one finds the migration by its journal. */
  g_assert_null(a2->op_uid);
  g_assert_cmpuint(a2->attempts, ==, 2);
  CordonVm *b2 = vmlet_cordon_find(back, "prod", "b");
  g_assert_cmpint(b2->state, ==, CORDON_VM_UNPLACEABLE);
  g_assert_cmpstr(b2->reason, ==, b->reason);
  g_assert_cmpuint(vmlet_cordon_left(back), ==, 1);
  g_assert_cmpuint(vmlet_cordon_count(back, CORDON_VM_UNPLACEABLE), ==, 1);

  /* Mode 0600, no temporary file left beside it. */
  g_autofree char *path = vmlet_cordon_path(dir);
  GStatBuf st;
  g_assert_cmpint(g_stat(path, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 0777, ==, 0600);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  g_assert_cmpstr(g_dir_read_name(d), ==, "cordon.json");
  g_assert_null(g_dir_read_name(d));

  g_assert_true(vmlet_cordon_remove(dir, &error));
  g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
  g_autoptr(VmletCordon) gone = NULL;
  g_assert_true(vmlet_cordon_load(dir, &gone, &error));
  g_assert_null(gone);
  cleanup(dir);
}

typedef struct {
  const char *content;
  const char *expect; /* a part of the message, after "<file>: " */
} Bad;

static void test_bad_input(void)
{
  static const Bad bad[] = {
      {"", "found an empty document"},
      {"{\"sinceUs\": 1,", "Parse error"},
      {"[1, 2]", "expected"},
      {"{}", "sinceUs"},
      {"{\"sinceUs\": \"yesterday\"}", "sinceUs: expected"},
      {"{\"sinceUs\": -5}", "sinceUs"},
      {"{\"sinceUs\": 1, \"draining\": \"yes\"}", "draining: expected"},
      {"{\"sinceUs\": 1, \"vms\": {}}", "vms: expected"},
      {"{\"sinceUs\": 1, \"vms\": [7]}", "vms[0]: expected an object"},
      {"{\"sinceUs\": 1, \"vms\": [{\"name\": \"a\", \"state\": \"Pending\"}]}",
       "vms[0].namespace"},
      {"{\"sinceUs\": 1, \"vms\": [{\"namespace\": \"default\", \"name\": \"A_b\", "
       "\"state\": \"Pending\"}]}",
       "vms[0].name"},
      {"{\"sinceUs\": 1, \"vms\": [{\"namespace\": \"default\", \"name\": \"a\", "
       "\"state\": \"Gone\"}]}",
       "vms[0].state: expected Pending, Evicting, Moved, Unplaceable, Stopping or Stopped, "
       "found \"Gone\""},
      {"{\"sinceUs\": 1, \"vms\": [{\"namespace\": \"default\", \"name\": \"a\", "
       "\"state\": \"Moved\", \"attempts\": -1}]}",
       "vms[0].attempts"},
      {"{\"sinceUs\": 1, \"vms\": [{\"namespace\": \"default\", \"name\": \"a\", "
       "\"state\": \"Moved\"}, {\"namespace\": \"default\", \"name\": \"a\", "
       "\"state\": \"Pending\"}]}",
       "vms[1]: VM default/a is listed twice"},
  };
  g_autofree char *dir = state_dir();
  g_autofree char *path = vmlet_cordon_path(dir);
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_test_message("%s", bad[i].content);
    g_autoptr(GError) error = NULL;
    g_assert_true(g_file_set_contents(path, bad[i].content, -1, NULL));
    VmletCordon *c = NULL;
    g_assert_false(vmlet_cordon_load(dir, &c, &error));
    g_assert_null(c);
    g_assert_nonnull(error);
    g_test_message("-> %s", error->message);
    g_assert_true(strstr(error->message, path) != NULL);
    g_assert_true(strstr(error->message, bad[i].expect) != NULL);
  }
  /* Too large: refused before it is read. */
  g_autofree char *big = g_strnfill(VMLET_CORDON_MAX_BYTES + 1, ' ');
  g_assert_true(g_file_set_contents(path, big, -1, NULL));
  g_autoptr(GError) error = NULL;
  VmletCordon *c = NULL;
  g_assert_false(vmlet_cordon_load(dir, &c, &error));
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_TOO_LARGE);
  /* Not a regular file. */
  g_unlink(path);
  g_assert_cmpint(g_mkdir(path, 0700), ==, 0);
  g_clear_error(&error);
  g_assert_false(vmlet_cordon_load(dir, &c, &error));
  g_assert_nonnull(error);
  g_rmdir(path);
  cleanup(dir);
}

static void test_transitions(void)
{
#define P CORDON_VM_PENDING
#define E CORDON_VM_EVICTING
#define M CORDON_VM_MOVED
#define U CORDON_VM_UNPLACEABLE
#define S CORDON_VM_STOPPING
#define X CORDON_VM_STOPPED
  /* allowed[from][to], cordon.h's diagram; staying is always allowed. */
  static const gboolean allowed[6][6] = {
      /*        P  E  M  U  S  X */
      [P] = {1, 1, 1, 1, 1, 1},
      [E] = {1, 1, 1, 1, 0, 0},
      [M] = {0, 0, 1, 0, 0, 0},
      [U] = {1, 0, 1, 1, 1, 0},
      [S] = {0, 0, 1, 0, 1, 1},
      [X] = {0, 0, 0, 0, 0, 1},
  };
  for (CordonVmState from = P; from <= X; from++)
    for (CordonVmState to = P; to <= X; to++) {
      g_test_message("%s -> %s", vmlet_cordon_vm_state_name(from),
                     vmlet_cordon_vm_state_name(to));
      g_assert_cmpint(vmlet_cordon_vm_can_move(from, to), ==, allowed[from][to]);
      CordonVm v = {.namespace = (char *)"default", .name = (char *)"a", .state = from};
      g_autoptr(GError) error = NULL;
      g_assert_cmpint(vmlet_cordon_vm_move(&v, to, &error), ==, allowed[from][to]);
      g_assert_cmpint(v.state, ==, allowed[from][to] ? to : from);
      if (!allowed[from][to])
        g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
    }
  g_assert_true(vmlet_cordon_vm_state_is_final(M));
  g_assert_true(vmlet_cordon_vm_state_is_final(U));
  g_assert_true(vmlet_cordon_vm_state_is_final(X));
  g_assert_false(vmlet_cordon_vm_state_is_final(P));
  g_assert_false(vmlet_cordon_vm_state_is_final(E));
  g_assert_false(vmlet_cordon_vm_state_is_final(S));
  for (CordonVmState s = P; s <= X; s++) {
    CordonVmState back;
    g_assert_true(vmlet_cordon_vm_state_from_name(vmlet_cordon_vm_state_name(s), &back));
    g_assert_cmpint(back, ==, s);
  }
  CordonVmState none;
  g_assert_false(vmlet_cordon_vm_state_from_name("pending", &none));
  g_assert_false(vmlet_cordon_vm_state_from_name(NULL, &none));
#undef P
#undef E
#undef M
#undef U
#undef S
#undef X
}

/* The reasons as vmletd writes them (vm-migrate-out*.c, vm-migrate.c, migrations.c). */
static void test_classify(void)
{
  static const struct {
    const char *reason;
    CordonVerdict verdict;
  } cases[] = {
      {"TargetUnschedulable: no peer can take the VM: hv-2: does not match nodeSelector "
       "zone=b; hv-3: cordoned (maintenance)", CORDON_UNPLACEABLE},
      {"TargetUnschedulable: no peer can take the VM: hv-2: at its inbound migration limit; "
       "hv-3: does not match nodeSelector zone=b", CORDON_RETRY_BUSY},
      {"TargetUnschedulable: hv-2 refused: node hv-2 already runs 1 incoming migration "
       "([migration] inbound=1)", CORDON_RETRY_BUSY},
      {"node hv-1 already runs 2 outgoing migrations ([migration] outbound=2)",
       CORDON_RETRY_BUSY},
      {"OtherMigrationInProgress: a is busy (MigrateOut)", CORDON_RETRY_BUSY},
      {"the VM has hot-plugged devices: detach them first (vmlet does not migrate them yet)",
       CORDON_UNPLACEABLE},
      {"VirtualDisk \"d\" is a block device: only shared storage migrates it",
       CORDON_UNPLACEABLE},
      {"migration is not enabled on this node ([migration] in vmlet.conf)", CORDON_UNPLACEABLE},
      {"no migration peers are configured (<config-dir>/peers.d)", CORDON_UNPLACEABLE},
      {"NotConverging: the migration made no progress for 30 s", CORDON_RETRY},
      {"Aborted: the source's QEMU exited during the migration", CORDON_RETRY},
      {NULL, CORDON_RETRY},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_test_message("%s", cases[i].reason ? cases[i].reason : "(none)");
    g_assert_cmpint(vmlet_cordon_classify(cases[i].reason), ==, cases[i].verdict);
  }
}

static void test_plural(void)
{
  static const char *const want[] = {"0 VMs", "1 VM", "2 VMs", "5 VMs"};
  static const guint n[] = {0, 1, 2, 5};
  for (gsize i = 0; i < G_N_ELEMENTS(n); i++) {
    g_autofree char *s = vmlet_cordon_plural_vms(n[i]);
    g_assert_cmpstr(s, ==, want[i]);
  }
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/cordon/absent", test_absent);
  g_test_add_func("/cordon/round-trip", test_round_trip);
  g_test_add_func("/cordon/bad-input", test_bad_input);
  g_test_add_func("/cordon/transitions", test_transitions);
  g_test_add_func("/cordon/classify", test_classify);
  g_test_add_func("/cordon/plural", test_plural);
  return g_test_run();
}
