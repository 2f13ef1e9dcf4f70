#include "qemu-argv.h"

#include "qemu-devices.h"
#include "resources.h"

/* Builders are called in a fixed order, one per device kind (libvirt's
 * qemuBuildCommandLine); each appends its arguments. */

static void arg(GPtrArray *a, const char *s)
{
  g_ptr_array_add(a, g_strdup(s));
}

G_GNUC_PRINTF(2, 3) static void argf(GPtrArray *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_ptr_array_add(a, g_strdup_vprintf(fmt, ap));
  va_end(ap);
}

/* Appends `opt {json}` and frees obj. */
static void arg_json(GPtrArray *a, const char *opt, JsonObject *obj)
{
  arg(a, opt);
  g_ptr_array_add(a, qdev_to_string(obj));
  json_object_unref(obj);
}

static void build_machine(GPtrArray *a, const VmPlan *p)
{
  const VmSpec *s = p->spec;
  argf(a, "-name");
  argf(a, "guest=%s.%s,debug-threads=on", s->meta.namespace, s->meta.name);
  /* Start paused: the agent connects QMP, sets things up, then sends `cont`. */
  arg(a, "-S");
  /* A migration destination waits for its state: migrate-incoming names the channel once
   * its TLS and capabilities are set (a URI here could not carry them). */
  if (p->incoming) {
    arg(a, "-incoming");
    arg(a, "defer");
  }
  arg(a, "-machine");
  GString *m = g_string_new(p->machine);
  g_string_append(m, ",usb=off,dump-guest-core=off");
  if (p->ovmf_code)
    g_string_append(m, ",pflash0=ovmf-code,pflash1=ovmf-vars");
  if (p->secure_boot)
    g_string_append(m, ",smm=on");
  g_ptr_array_add(a, g_string_free(m, FALSE));
  arg(a, "-accel");
  /* TCG's translation cache defaults to 1 GiB (capped at RAM/8) and is never given back:
   * bounded here so the memory limit (resources.h) can count it. */
  if (p->accel == VMLET_ACCEL_KVM)
    arg(a, "kvm");
  else
    g_ptr_array_add(a, g_strdup_printf("tcg,tb-size=%d", VMLET_TCG_TB_SIZE_MIB));
  arg(a, "-cpu");
  arg(a, p->cpu);
  arg(a, "-m");
  argf(a, "%" G_GUINT64_FORMAT, p->memory_mib);
  arg(a, "-overcommit");
  arg(a, "mem-lock=off");
  arg(a, "-smp");
  argf(a, "%u,sockets=%u,dies=1,cores=%u,threads=1", s->cores, p->sockets, p->cores_per_socket);
  arg(a, "-uuid");
  arg(a, p->uuid);
  arg(a, "-no-user-config");
  arg(a, "-nodefaults");
}

static void build_monitor(GPtrArray *a, const VmPlan *p)
{
  arg(a, "-chardev");
  argf(a, "socket,id=charmonitor,path=%s,server=on,wait=off", p->qmp_socket);
  arg(a, "-mon");
  arg(a, "chardev=charmonitor,id=monitor,mode=control");
}

static void build_clock_and_boot(GPtrArray *a, const VmPlan *p)
{
  arg(a, "-rtc");
  /* Windows keeps the RTC in local time. */
  arg(a, p->spec->os_type == VM_OS_WINDOWS ? "base=localtime" : "base=utc");
  /* A guest shutdown stops the VM instead of ending QEMU, so the agent sees SHUTDOWN with
   * its reason and decides by run policy. */
  arg(a, "-no-shutdown");
  /* strict: boot only from devices with a bootindex, in that order (blockDeviceRefs order). */
  arg(a, "-boot");
  arg(a, "strict=on");
}

/* A raw format node named node over a file node named node-file, for -machine pflashN. */
static void firmware_blockdevs(GPtrArray *a, const char *node, const char *filename,
                               gboolean read_only)
{
  g_autofree char *file_node = g_strdup_printf("%s-file", node);
  JsonObject *file = json_object_new();
  json_object_set_string_member(file, "driver", "file");
  json_object_set_string_member(file, "filename", filename);
  json_object_set_string_member(file, "node-name", file_node);
  if (read_only)
    json_object_set_boolean_member(file, "read-only", TRUE);
  arg_json(a, "-blockdev", file);
  JsonObject *fmt = json_object_new();
  json_object_set_string_member(fmt, "node-name", node);
  json_object_set_boolean_member(fmt, "read-only", read_only);
  json_object_set_string_member(fmt, "driver", "raw");
  json_object_set_string_member(fmt, "file", file_node);
  arg_json(a, "-blockdev", fmt);
}

static void build_firmware(GPtrArray *a, const VmPlan *p)
{
  if (!p->ovmf_code)
    return;
  if (p->secure_boot) {
    /* Secure Boot OVMF keeps its variables safe only with SMM-protected flash. */
    arg(a, "-global");
    arg(a, "driver=cfi.pflash01,property=secure,value=on");
  }
  /* OVMF code is shared and read-only; the variables store is this VM's own copy. */
  firmware_blockdevs(a, "ovmf-code", p->ovmf_code, TRUE);
  firmware_blockdevs(a, "ovmf-vars", p->ovmf_vars, FALSE);
}

/* Root ports: one per PCIe device present at boot, then the spare ones for disk hotplug. */
static void build_root_ports(GPtrArray *a, guint n_ports)
{
  for (guint i = 1; i <= n_ports; i++) {
    gboolean first_of_many = (i - 1) % 8 == 0 && i < n_ports;
    arg_json(a, "-device", qdev_root_port(i, first_of_many));
  }
}

static JsonObject *pci_device(const char *driver, const char *id, guint port)
{
  JsonObject *o = json_object_new();
  g_autofree char *bus = g_strdup_printf("pci.%u", port);
  json_object_set_string_member(o, "driver", driver);
  json_object_set_string_member(o, "id", id);
  json_object_set_string_member(o, "bus", bus);
  json_object_set_string_member(o, "addr", "0x0");
  return o;
}

static void build_disks(GPtrArray *a, const GPtrArray *disks)
{
  for (guint i = 0; i < disks->len; i++) {
    const VmPlanDisk *d = disks->pdata[i];
    g_autofree char *bus = vm_plan_disk_bus(d);
    arg_json(a, "-blockdev", qdev_blockdev_storage(d));
    arg_json(a, "-blockdev", qdev_blockdev_format(d));
    arg_json(a, "-device", qdev_disk_device(d, bus));
  }
}

static void build_controllers(GPtrArray *a, const VmPlan *p)
{
  /* virtio-scsi is present from boot so ISO images can be hot-plugged as scsi-cd later. */
  arg_json(a, "-device", pci_device("virtio-scsi-pci", "scsi0", p->scsi_port));
  arg_json(a, "-device", pci_device("virtio-serial-pci", "virtio-serial0", p->serial_port));
  /* An absolute pointer makes the VNC cursor follow the client's. */
  arg_json(a, "-device", pci_device("qemu-xhci", "usb", p->usb_port));
  JsonObject *tablet = json_object_new();
  json_object_set_string_member(tablet, "driver", "usb-tablet");
  json_object_set_string_member(tablet, "id", "input0");
  json_object_set_string_member(tablet, "bus", "usb.0");
  json_object_set_string_member(tablet, "port", "1");
  arg_json(a, "-device", tablet);
  arg_json(a, "-device", pci_device("virtio-balloon-pci", "balloon0", p->balloon_port));
}

static void build_console_and_agent(GPtrArray *a, const VmPlan *p)
{
  arg(a, "-chardev");
  argf(a, "socket,id=charserial0,path=%s,server=on,wait=off", p->console_socket);
  JsonObject *serial = json_object_new();
  json_object_set_string_member(serial, "driver", "isa-serial");
  json_object_set_string_member(serial, "chardev", "charserial0");
  json_object_set_string_member(serial, "id", "serial0");
  json_object_set_int_member(serial, "index", 0);
  arg_json(a, "-device", serial);

  arg(a, "-chardev");
  argf(a, "socket,id=charagent,path=%s,server=on,wait=off", p->agent_socket);
  JsonObject *port = json_object_new();
  json_object_set_string_member(port, "driver", "virtserialport");
  json_object_set_string_member(port, "bus", "virtio-serial0.0");
  json_object_set_int_member(port, "nr", 1);
  json_object_set_string_member(port, "chardev", "charagent");
  json_object_set_string_member(port, "id", "channel0");
  json_object_set_string_member(port, "name", "org.qemu.guest_agent.0");
  arg_json(a, "-device", port);
}

static void build_display(GPtrArray *a, const VmPlan *p)
{
  JsonObject *audio = json_object_new();
  json_object_set_string_member(audio, "id", "audio0");
  json_object_set_string_member(audio, "driver", "none");
  arg_json(a, "-audiodev", audio);
  /* VNC on a unix socket only: the agent decides who may reach it. */
  arg(a, "-vnc");
  argf(a, "unix:%s,audiodev=audio0", p->vnc_socket);
  JsonObject *vga = json_object_new();
  json_object_set_string_member(vga, "driver", "VGA");
  json_object_set_string_member(vga, "id", "video0");
  json_object_set_string_member(vga, "bus", "pcie.0");
  json_object_set_string_member(vga, "addr", "0x1");
  arg_json(a, "-device", vga);
}

GStrv vm_qemu_argv(const VmPlan *p)
{
  g_autoptr(GPtrArray) a = g_ptr_array_new_with_free_func(g_free);
  arg(a, p->qemu_binary);
  build_machine(a, p);
  build_monitor(a, p);
  build_clock_and_boot(a, p);
  build_firmware(a, p);

  build_root_ports(a, p->root_ports);
  build_disks(a, p->disks);
  build_controllers(a, p);
  /* Attachments' disks at a start: on the spare port or SCSI id they had, after the
   * controllers (a scsi-cd needs scsi0 to exist), with no bootindex. */
  build_disks(a, p->hotplugged);
  build_console_and_agent(a, p);
  build_display(a, p);

  arg(a, "-sandbox");
  arg(a, VMLET_QEMU_SANDBOX);
  arg(a, "-msg");
  arg(a, "timestamp=on");
  g_ptr_array_add(a, NULL);
  return (GStrv)g_ptr_array_free(g_steal_pointer(&a), FALSE);
}
