#!/usr/bin/python3
"""A stand-in for org.freedesktop.systemd1 on a private bus, for vmlet's systemd backend.

Real systemd cannot run on the test machines (PID 1 is not systemd, there is no system
bus), so the sd-bus code is tested against this service. It implements the part of the
Manager interface vmlet uses, with systemd's own signatures, error names and messages:

  StartTransientUnit(ssa(sv)a(sa(sv))) -> o   then JobRemoved(uoss) after a delay
  SetUnitProperties(sba(sv)), GetUnit(s) -> o, GetUnitProcesses(s) -> a(sus)
  org.freedesktop.DBus.Properties.Get on each unit (org.freedesktop.systemd1.Scope)

Every call is appended to the JSON-lines log given with --log, with each property's name,
D-Bus signature and value, so tests assert exactly what was sent. A scope whose processes
have all exited is collected, as systemd does. Test knobs on org.vmlet.FakeSystemd:
SetJobResult(s) (e.g. "failed"), SetJobDelay(d seconds), HoldUnit(s) (a unit that exists
and never goes away: UnitExists), Quit() (the bus peer disappears).

Usage: fake-systemd1.py --log FILE   (DBUS_SESSION_BUS_ADDRESS: the private bus)
"""
import argparse
import json
import os

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

BUS_NAME = "org.freedesktop.systemd1"
PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
SCOPE = "org.freedesktop.systemd1.Scope"
UNIT = "org.freedesktop.systemd1.Unit"
PROPS = "org.freedesktop.DBus.Properties"

# The transient scope properties systemd accepts that vmlet may send, with their types
# (systemd's bus_cgroup_set_property / bus_scope_set_property; src/core/dbus-*.c).
KNOWN = {
    "Description": "s", "Slice": "s", "PIDs": "au", "Delegate": "b", "CollectMode": "s",
    "CPUWeight": "t", "StartupCPUWeight": "t", "CPUQuotaPerSecUSec": "t",
    "CPUQuotaPeriodUSec": "t", "MemoryMax": "t", "MemoryHigh": "t", "TasksMax": "t",
    "AddRef": "b", "KillMode": "s",
}
# systemd's defaults when a property is not set ("infinity" is UINT64_MAX).
INFINITY = 2**64 - 1
DEFAULTS = {"CPUWeight": INFINITY, "CPUQuotaPerSecUSec": INFINITY,
            "CPUQuotaPeriodUSec": INFINITY, "MemoryMax": INFINITY, "TasksMax": INFINITY}


def signature(value):
    if isinstance(value, dbus.Boolean):
        return "b"
    if isinstance(value, dbus.UInt64):
        return "t"
    if isinstance(value, dbus.UInt32):
        return "u"
    if isinstance(value, dbus.Int64):
        return "x"
    if isinstance(value, dbus.Int32):
        return "i"
    if isinstance(value, dbus.Double):
        return "d"
    if isinstance(value, dbus.String):
        return "s"
    if isinstance(value, dbus.ObjectPath):
        return "o"
    if isinstance(value, dbus.Array):
        return "a" + (value.signature or "?")
    return "?"


def plain(value):
    if isinstance(value, dbus.Array):
        return [plain(v) for v in value]
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath)):
        return str(value)
    return int(value) if isinstance(value, (int,)) else value


def unit_path(name):
    # systemd's bus_label_escape: every byte outside [A-Za-z0-9] as _xx
    return PATH + "/unit/" + "".join(
        c if c.isalnum() and c.isascii() else "_%02x" % ord(c) for c in name)


def error(name, message):
    e = dbus.exceptions.DBusException(message, name=name)
    return e


class Unit(dbus.service.Object):
    def __init__(self, bus, name, props):
        self.name = name
        self.props = dict(props)
        self.held = False
        super().__init__(bus, unit_path(name))

    @dbus.service.method(PROPS, in_signature="ss", out_signature="v")
    def Get(self, interface, prop):
        if prop in self.props:
            value = self.props[prop]
        elif prop in DEFAULTS:
            value = DEFAULTS[prop]
        else:
            raise error("org.freedesktop.DBus.Error.UnknownProperty",
                        f"Unknown property {prop}")
        sig = KNOWN.get(prop, "s")
        if sig == "t":
            return dbus.UInt64(value, variant_level=1)
        if sig == "b":
            return dbus.Boolean(value, variant_level=1)
        if sig == "au":
            return dbus.Array([dbus.UInt32(v) for v in value], signature="u", variant_level=1)
        return dbus.String(value, variant_level=1)

    def pids(self):
        return [p for p in self.props.get("PIDs", []) if os.path.exists(f"/proc/{p}")]


class Manager(dbus.service.Object):
    def __init__(self, bus, log):
        super().__init__(bus, PATH)
        self.bus = bus
        self.log = log
        self.units = {}
        self.next_job = 1
        self.job_result = "done"
        self.job_delay = 0.2
        GLib.timeout_add(100, self.collect)

    def record(self, **entry):
        with open(self.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def collect(self):
        for name, unit in list(self.units.items()):
            if not unit.held and not unit.pids():
                unit.remove_from_connection()
                del self.units[name]
                self.record(method="collected", unit=name)
        return True

    @dbus.service.signal(MANAGER, signature="uoss")
    def JobRemoved(self, id, job, unit, result):
        pass

    @dbus.service.method(MANAGER, in_signature="ssa(sv)a(sa(sv))", out_signature="o")
    def StartTransientUnit(self, name, mode, properties, aux):
        props = [[str(k), signature(v), plain(v)] for k, v in properties]
        self.record(method="StartTransientUnit", unit=str(name), mode=str(mode),
                    properties=props, aux=len(aux))
        if not name.endswith(".scope"):
            raise error("org.freedesktop.DBus.Error.InvalidArgs",
                        f"Unit type {name.rsplit('.', 1)[-1]} does not support transient units.")
        if mode not in ("fail", "replace", "isolate", "ignore-dependencies",
                        "ignore-requirements", "flush", "replace-irreversibly"):
            raise error("org.freedesktop.DBus.Error.InvalidArgs", f"Job mode {mode} invalid.")
        for k, sig, _ in props:
            if k not in KNOWN:
                raise error("org.freedesktop.DBus.Error.PropertyReadOnly",
                            f"Cannot set property {k}, or unknown property.")
            if KNOWN[k] != sig:
                raise error("org.freedesktop.DBus.Error.InvalidArgs",
                            f"Invalid type for property {k}: expected {KNOWN[k]}, got {sig}")
        if name in self.units:
            raise error("org.freedesktop.systemd1.UnitExists", f"Unit {name} already exists.")
        values = {k: v for k, _, v in props}
        if not values.get("PIDs"):
            raise error("org.freedesktop.DBus.Error.InvalidArgs",
                        f"Scope {name} has no PIDs. Refusing.")
        job_id = self.next_job
        self.next_job += 1
        job = dbus.ObjectPath(f"{PATH}/job/{job_id}")
        result = self.job_result
        if result == "done":
            self.units[str(name)] = Unit(self.bus, str(name), values)

        def finish():
            self.record(method="JobRemoved", unit=str(name), job=str(job), result=result)
            self.JobRemoved(dbus.UInt32(job_id), job, name, result)
            return False
        GLib.timeout_add(int(self.job_delay * 1000), finish)
        return job

    @dbus.service.method(MANAGER, in_signature="sba(sv)", out_signature="")
    def SetUnitProperties(self, name, runtime, properties):
        props = [[str(k), signature(v), plain(v)] for k, v in properties]
        self.record(method="SetUnitProperties", unit=str(name), runtime=bool(runtime),
                    properties=props)
        unit = self.units.get(str(name))
        if not unit:
            raise error("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
        for k, sig, v in props:
            if KNOWN.get(k) != sig:
                raise error("org.freedesktop.DBus.Error.InvalidArgs",
                            f"Invalid type for property {k}")
            unit.props[k] = v

    @dbus.service.method(MANAGER, in_signature="s", out_signature="o")
    def GetUnit(self, name):
        if str(name) not in self.units:
            raise error("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
        return dbus.ObjectPath(unit_path(str(name)))

    @dbus.service.method(MANAGER, in_signature="s", out_signature="a(sus)")
    def GetUnitProcesses(self, name):
        unit = self.units.get(str(name))
        if not unit:
            raise error("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
        cgroup = "/" + unit.props.get("Slice", "system.slice") + "/" + str(name)
        return [(cgroup, dbus.UInt32(p), "qemu") for p in unit.pids()]

    # ---- test knobs ----

    @dbus.service.method("org.vmlet.FakeSystemd", in_signature="s", out_signature="")
    def SetJobResult(self, result):
        self.job_result = str(result)

    @dbus.service.method("org.vmlet.FakeSystemd", in_signature="d", out_signature="")
    def SetJobDelay(self, seconds):
        self.job_delay = float(seconds)

    @dbus.service.method("org.vmlet.FakeSystemd", in_signature="s", out_signature="")
    def HoldUnit(self, name):
        unit = Unit(self.bus, str(name), {"PIDs": []})
        unit.held = True
        self.units[str(name)] = unit

    @dbus.service.method("org.vmlet.FakeSystemd", in_signature="", out_signature="")
    def Quit(self):
        GLib.timeout_add(50, lambda: os._exit(0))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()  # the private bus, whatever its role for vmlet
    name = dbus.service.BusName(BUS_NAME, bus, do_not_queue=True)
    Manager(bus, args.log)
    print("ready", flush=True)
    GLib.MainLoop().run()
    del name


if __name__ == "__main__":
    main()
