"""A small synchronous QMP client for tests (Python standard library only)."""
import json
import socket
import subprocess

from waiting import wait


class QMPError(Exception):
    pass


def connect_unix(path, timeout, interval=0.02, proc=None):
    """Connects to a unix socket that QEMU may not have created yet, trying every interval
    seconds; gives up early when proc (the QEMU that should create it) has exited."""
    def connect():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"QEMU exited with {proc.returncode} before {path} existed")
            raise
    return wait(connect, timeout, f"connect to {path}", interval,
                ignore=(FileNotFoundError, ConnectionRefusedError))


class QMP:
    def __init__(self, path, timeout=30.0):
        self.sock = connect_unix(path, timeout)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rw", encoding="utf-8")
        self.events = []
        greeting = json.loads(self.file.readline())
        if "QMP" not in greeting:
            raise QMPError(f"no QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def cmd(self, name, /, **arguments):  # "/": a command may take a "name" argument
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise QMPError(f"connection closed during {name}")
            reply = json.loads(line)
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QMPError(f"{name}: {reply['error']}")
            return reply["return"]

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


class Qemu:
    """A QEMU process started from an argv, stopped (and reaped) on close."""

    def __init__(self, argv, qmp_socket, log_path):
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.qmp = QMP(qmp_socket)
        except Exception:
            self.close()
            raise

    def close(self):
        if getattr(self, "qmp", None):
            try:
                self.qmp.cmd("quit")
            except (QMPError, OSError):
                pass
            self.qmp.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def read_log(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")
