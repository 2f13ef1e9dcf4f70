/* VirtualMachineClass: the CPU model and sizing policies a VM's class imposes.
 *
 * Classes are data (the JSON files in qemu-profiles/) in DVP's shape, plus one vmlet block, spec.qemu,
 * for what a cluster-level class does not say but a node must: the machine type and the CPU
 * model to use when the host CPU cannot be passed through (TCG). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "diag.h"
#include "meta.h"
#include "vmspec.h"

typedef enum {
  VM_CPU_HOST,
  VM_CPU_HOST_PASSTHROUGH,
  VM_CPU_DISCOVERY,
  VM_CPU_MODEL,
  VM_CPU_FEATURES,
} VmCpuType;

#define VM_CLASS_MAX_FRACTIONS 16

typedef struct {
  guint min_cores, max_cores;
  guint n_fractions; /* 0: any fraction */
  guint fractions[VM_CLASS_MAX_FRACTIONS];
  guint64 memory_min, memory_max, memory_step; /* 0: unbounded / any step */
  guint64 per_core_min, per_core_max;          /* memory per core; 0: unbounded */
} VmSizingPolicy;

typedef struct {
  gint refcount;
  VmletMeta meta;
  VmCpuType cpu_type;
  char *cpu_model;     /* Model: the QEMU model name */
  GStrv cpu_features;  /* Features / Model: extra features, may be empty */
  GArray *policies;    /* VmSizingPolicy */
  char *machine;       /* spec.qemu.machine, default "q35" */
  char *tcg_cpu_model; /* spec.qemu.tcgCpuModel for Host*, default "max" */
} VmClass;

VmClass *vm_class_parse(JsonObject *root, VmletDiag *d);
/* A machine type vmlet runs: "q35" or a versioned "pc-q35-X.Y" (nothing that could add
 * properties to -machine, such as ",kernel=PATH"). */
gboolean vm_class_machine_valid(const char *machine);
VmClass *vm_class_ref(VmClass *klass);
void vm_class_unref(VmClass *klass);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmClass, vm_class_unref)

/* Checks spec cores, coreFraction and memory against the class's sizing policies; records
 * errors at the spec's paths naming the allowed values. */
gboolean vm_class_check_sizing(const VmClass *klass, const VmSpec *spec, VmletDiag *d);
