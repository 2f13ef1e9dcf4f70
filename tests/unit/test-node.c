#include <glib/gstdio.h>

#include "node.h"
#include "vmlet-error.h"

static char *write_temp(const char *contents)
{
  g_autoptr(GError) error = NULL;
  char *path = NULL;
  int fd = g_file_open_tmp("vmlet-node-XXXXXX.conf", &path, &error);
  g_assert_no_error(error);
  close(fd);
  g_assert_true(g_file_set_contents(path, contents, -1, &error));
  return path;
}

static void test_defaults(void)
{
  g_autoptr(VmletNode) n = vmlet_node_new_default();
  g_assert_cmpstr(n->run_dir, ==, "/run/vmlet");
  g_assert_cmpstr(n->disk_dir, ==, "/var/lib/vmlet/disks");
  g_assert_cmpint(n->accel, ==, VMLET_ACCEL_AUTO);
  g_assert_cmpstr(n->qemu_user, ==, "vmlet-qemu");
  g_assert_cmpint(n->cgroup_manager, ==, VMLET_CGROUP_AUTO);
  g_assert_cmpint(n->cpu_limit, ==, VMLET_CPU_LIMIT_GUARANTEE);
  vmlet_node_resolve_accel(n);
  g_assert_cmpint(n->accel, !=, VMLET_ACCEL_AUTO);
}

/* auto picks KVM only when /dev/kvm is usable and backed by hardware virtualization: a
 * /sys/module with just kvm_pvm (nested, cannot run SeaBIOS) means TCG. */
static void test_kvm_detection(void)
{
  g_autofree char *dir = g_dir_make_tmp("vmlet-sysfs-XXXXXX", NULL);
  g_assert_nonnull(dir);
  g_autofree char *kvm = g_build_filename(dir, "kvm", NULL);
  g_autofree char *pvm = g_build_filename(dir, "kvm_pvm", NULL);
  g_autofree char *amd = g_build_filename(dir, "kvm_amd", NULL);
  g_assert_cmpint(g_mkdir(kvm, 0700), ==, 0);
  g_assert_cmpint(g_mkdir(pvm, 0700), ==, 0);
  g_assert_false(vmlet_kvm_usable(dir));
  g_assert_cmpint(g_mkdir(amd, 0700), ==, 0);
  g_assert_true(vmlet_kvm_usable(dir) == (g_access("/dev/kvm", R_OK | W_OK) == 0));
  g_assert_false(vmlet_kvm_usable("/nonexistent"));
  g_rmdir(amd);
  g_rmdir(pvm);
  g_rmdir(kvm);
  g_rmdir(dir);
}

static void test_load(void)
{
  g_autofree char *path = write_temp("[node]\nname=hv-1\nlabels=disktype=ssd;zone=a\n"
                                     "[paths]\nstate-dir=/srv/vmlet\n"
                                     "[qemu]\naccel=tcg\nbinary=/opt/qemu/bin/qemu\nuser=\n"
                                     "[resources]\ncgroup-manager=cgroupfs-v1\n"
                                     "cgroup-parent=vmlet/test\ncore-fraction=cap\n");
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletNode) n = vmlet_node_load(path, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(n->name, ==, "hv-1");
  g_assert_cmpstr(g_hash_table_lookup(n->labels, "disktype"), ==, "ssd");
  g_assert_cmpstr(g_hash_table_lookup(n->labels, "zone"), ==, "a");
  /* disk and image dirs follow state-dir unless set. */
  g_assert_cmpstr(n->disk_dir, ==, "/srv/vmlet/disks");
  g_assert_cmpstr(n->image_dir, ==, "/srv/vmlet/images");
  g_assert_cmpint(n->accel, ==, VMLET_ACCEL_TCG);
  g_assert_cmpstr(n->qemu_binary, ==, "/opt/qemu/bin/qemu");
  g_assert_cmpstr(n->qemu_user, ==, "");
  g_assert_cmpint(n->cgroup_manager, ==, VMLET_CGROUP_FS_V1);
  g_assert_cmpstr(n->cgroup_parent, ==, "vmlet/test");
  g_assert_cmpint(n->cpu_limit, ==, VMLET_CPU_LIMIT_CAP);
  g_assert_cmpstr(n->slice, ==, "machine.slice");
  g_unlink(path);
}

static void assert_rejected(const char *contents, const char *message_suffix)
{
  g_autofree char *path = write_temp(contents);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletNode) n = vmlet_node_load(path, &error);
  g_assert_null(n);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_INVALID);
  g_test_message("%s", error->message);
  g_assert_true(g_str_has_prefix(error->message, path));
  g_assert_true(g_str_has_suffix(error->message, message_suffix));
  g_unlink(path);
}

static void test_rejections(void)
{
  assert_rejected("[qemu]\naccel=xen\n", "[qemu] accel: expected one of auto, kvm, tcg, found \"xen\"");
  assert_rejected("[paths]\nrun-dir=relative/dir\n",
                  "[paths] run-dir: expected an absolute path of at most 512 bytes without "
                  "commas, found \"relative/dir\"");
  assert_rejected("[paths]\nrun-dir=/a,b\n", "without commas, found \"/a,b\"");
  assert_rejected("[qemu]\nacel=kvm\n", "downtime-limit, outbound, inbound, progress-timeout, "
                                        "multifd-channels)");
  assert_rejected("[migration]\nlisten=1.2.3.4\n", "unknown setting (known: [node] name, "
                  "labels; [paths] run-dir, state-dir, disk-dir, image-dir, config-dir, "
                  "profiles-dir; [qemu] binary, accel, user, ovmf-code, ovmf-vars, "
                  "ovmf-code-secboot, ovmf-vars-secboot; [resources] cgroup-manager, slice, "
                  "cgroup-parent, core-fraction; [migration] listen-address, port, cert-dir, "
                  "stream-ports, bandwidth, downtime-limit, outbound, inbound, progress-timeout, "
                  "multifd-channels)");
  assert_rejected("[migration]\nport=0\n",
                  "[migration] port: expected an integer from 1 to 65535, found \"0\"");
  assert_rejected("[migration]\ninbound=many\n",
                  "[migration] inbound: expected an integer from 1 to 16, found \"many\"");
  assert_rejected("[migration]\nlisten-address=hv-1\n",
                  "[migration] listen-address: expected an IP address, found \"hv-1\"");
  assert_rejected("[migration]\ncert-dir=pki\n",
                  "[migration] cert-dir: expected an absolute path without commas, found \"pki\"");
  assert_rejected("[migration]\nstream-ports=50000-50000\n", "found \"50000-50000\"");
  assert_rejected("[migration]\nstream-ports=80-90\n", "found \"80-90\"");
  assert_rejected("[migration]\nbandwidth=1k\n",
                  "[migration] bandwidth: expected bytes per second as a quantity of at least "
                  "1Mi, such as 1Gi, found \"1k\"");
  assert_rejected("[resources]\ncgroup-manager=cgroupfs\n",
                  "[resources] cgroup-manager: expected one of auto, systemd, cgroupfs-v2, "
                  "cgroupfs-v1, none, found \"cgroupfs\"");
  assert_rejected("[resources]\ncore-fraction=hard\n",
                  "expected one of guarantee, cap, found \"hard\"");
  assert_rejected("[resources]\nslice=machine\n",
                  "[resources] slice: expected a slice unit name such as machine.slice, found "
                  "\"machine\"");
  assert_rejected("[resources]\ncgroup-parent=/a/../b\n", "found \"/a/../b\"");
  assert_rejected("[qemu]\nuser=qemu user\n", "found \"qemu user\"");
  assert_rejected("[node]\nlabels=novalue\n", "found \"novalue\"");
  assert_rejected("not a key file", "");
}

static void test_migration(void)
{
  g_autoptr(VmletNode) defaults = vmlet_node_new_default();
  g_assert_false(defaults->migration.enabled);
  g_assert_cmpuint(defaults->migration.outbound, ==, 2);
  g_assert_cmpuint(defaults->migration.inbound, ==, 1);
  g_autofree char *path = write_temp("[migration]\nlisten-address=10.0.0.1\nport=7444\n"
                                     "cert-dir=/srv/pki\nstream-ports=50000-50009\n"
                                     "bandwidth=512Mi\ndowntime-limit=200\noutbound=3\n"
                                     "inbound=2\nprogress-timeout=20\nmultifd-channels=2\n");
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletNode) n = vmlet_node_load(path, &error);
  g_assert_no_error(error);
  const VmletMigrationSettings *m = &n->migration;
  g_assert_true(m->enabled);
  g_assert_cmpstr(m->listen_address, ==, "10.0.0.1");
  g_assert_cmpuint(m->port, ==, 7444);
  g_assert_cmpstr(m->cert_dir, ==, "/srv/pki");
  g_assert_cmpuint(m->stream_port_min, ==, 50000);
  g_assert_cmpuint(m->stream_port_max, ==, 50009);
  g_assert_cmpuint(m->bandwidth, ==, 512 << 20);
  g_assert_cmpuint(m->downtime_ms, ==, 200);
  g_assert_cmpuint(m->outbound, ==, 3);
  g_assert_cmpuint(m->inbound, ==, 2);
  g_assert_cmpuint(m->progress_timeout_s, ==, 20);
  g_assert_cmpuint(m->multifd_channels, ==, 2);
  g_unlink(path);
}

static void test_missing_file(void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmletNode) n = vmlet_node_load("/nonexistent/vmlet.conf", &error);
  g_assert_null(n);
  g_assert_error(error, VMLET_ERROR, VMLET_ERROR_NOT_FOUND);
}

int main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/node/defaults", test_defaults);
  g_test_add_func("/node/kvm-detection", test_kvm_detection);
  g_test_add_func("/node/load", test_load);
  g_test_add_func("/node/rejections", test_rejections);
  g_test_add_func("/node/missing-file", test_missing_file);
  g_test_add_func("/node/migration", test_migration);
  return g_test_run();
}
