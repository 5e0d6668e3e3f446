"""An operating-system sandbox for one kernel process: Landlock and seccomp, through ctypes.

A server run for other people (``serve --sandbox``) must not let a client's
code write the server's files, run programs or reach the network. Hiding
built-ins is not enough: Mathics3 can load Python modules (``LoadModule``), and
Python can do anything the process may. So the kernel asks Linux to refuse
those things to the process itself, irrevocably, before it evaluates anything:

- **Landlock** (:func:`landlock_abi` >= 1): no file may be created, written,
  truncated, renamed, linked or removed outside the kernel's scratch
  directory, none read outside it and the system's and Python's directories
  (:func:`readable`: not the server's key files), no file may be executed, and (ABI >= 4) no TCP port may be bound
  or connected to (except the server's own, for a kernel linked by TCP);
  from ABI 6 the kernel can also not signal processes outside its sandbox
  (the server) nor reach abstract Unix sockets. Landlock confines the calling
  thread and the threads it starts later, so it is applied while the kernel
  has one thread (:func:`confine_files`), before it connects.
- **seccomp** (:func:`seccomp_program`): once connected, every thread of the
  process is refused ``execve``, new sockets of any family (the link to the
  server is already open), ``io_uring`` (which would bypass this filter),
  ``ptrace`` and the other system calls in :data:`REFUSED`; they fail with
  ``EPERM``. A system call of another architecture ends the process.

Both need no privilege: ``PR_SET_NO_NEW_PRIVS`` comes first. :func:`probe`
tries both in a throw-away process so that ``serve --sandbox`` refuses to start
(one sentence) where they cannot be applied, rather than leaving kernels that
die later. No server code is imported here; this runs in kernels.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "AUDITED",
    "REFUSED",
    "SANDBOX_MESSAGE",
    "confine_files",
    "confine_syscalls",
    "landlock_abi",
    "probe",
    "refusal",
    "seccomp_program",
]

#: What a kernel says when the sandbox refused an operation (``LinkServer::sandbox``).
SANDBOX_MESSAGE = (
    "the sandbox of this server forbids `1`: a kernel may write files only in its "
    "scratch directory ($TemporaryDirectory), read them only there and in the system's "
    "and Python's directories, and may not run programs or open network connections"
)

# ---------------------------------------------------------------- constants

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1

# Landlock (include/uapi/linux/landlock.h)
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE_CHAR = 1 << 6
_FS_MAKE_DIR = 1 << 7
_FS_MAKE_REG = 1 << 8
_FS_MAKE_SOCK = 1 << 9
_FS_MAKE_FIFO = 1 << 10
_FS_MAKE_BLOCK = 1 << 11
_FS_MAKE_SYM = 1 << 12
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1  # ABI 6

# seccomp BPF (include/uapi/linux/filter.h, seccomp.h)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_OFFSET_NR = 0
_OFFSET_ARCH = 4


@dataclass(frozen=True, slots=True)
class _Arch:
    """One architecture's numbers: its audit tag and the system calls we need."""

    audit: int
    landlock: tuple[int, int, int]  # create_ruleset, add_rule, restrict_self
    seccomp: int
    refused: dict[str, int]
    x32: bool = False  # x86_64: syscalls with bit 30 set are the x32 ABI


#: The system calls refused with EPERM, by name; the numbers are per architecture.
REFUSED = (
    "execve", "execveat", "socket", "ptrace", "process_vm_readv", "process_vm_writev",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "mount", "umount2",
    "unshare", "setns", "pivot_root", "chroot", "keyctl", "add_key", "request_key",
    "userfaultfd", "perf_event_open", "kexec_load", "init_module", "finit_module",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "mount_setattr", "fsopen",
    "fsmount", "move_mount", "open_tree",
    # Landlock does not cover a file's mode, owner or times: refuse changing them.
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "utime", "utimes", "utimensat", "futimesat",
)

_ARCHES = {
    "x86_64": _Arch(
        audit=0xC000003E, landlock=(444, 445, 446), seccomp=317, x32=True,
        refused={
            "execve": 59, "execveat": 322, "socket": 41, "ptrace": 101,
            "process_vm_readv": 310, "process_vm_writev": 311, "io_uring_setup": 425,
            "io_uring_enter": 426, "io_uring_register": 427, "bpf": 321, "mount": 165,
            "umount2": 166, "unshare": 272, "setns": 308, "pivot_root": 155, "chroot": 161,
            "keyctl": 250, "add_key": 248, "request_key": 249, "userfaultfd": 323,
            "perf_event_open": 298, "kexec_load": 246, "init_module": 175,
            "finit_module": 313, "open_by_handle_at": 304, "name_to_handle_at": 303,
            "fanotify_init": 300, "mount_setattr": 442, "fsopen": 430, "fsmount": 432,
            "move_mount": 429, "open_tree": 428, "chmod": 90, "fchmod": 91,
            "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94,
            "fchownat": 260, "utime": 132, "utimes": 235, "utimensat": 280, "futimesat": 261,
        },
    ),
    "aarch64": _Arch(
        audit=0xC00000B7, landlock=(444, 445, 446), seccomp=277,
        refused={
            "execve": 221, "execveat": 281, "socket": 198, "ptrace": 117,
            "process_vm_readv": 270, "process_vm_writev": 271, "io_uring_setup": 425,
            "io_uring_enter": 426, "io_uring_register": 427, "bpf": 280, "mount": 40,
            "umount2": 39, "unshare": 97, "setns": 268, "pivot_root": 41, "chroot": 51,
            "keyctl": 219, "add_key": 217, "request_key": 218, "userfaultfd": 282,
            "perf_event_open": 241, "kexec_load": 104, "init_module": 105,
            "finit_module": 273, "open_by_handle_at": 265, "name_to_handle_at": 264,
            "fanotify_init": 262, "mount_setattr": 442, "fsopen": 430, "fsmount": 432,
            "move_mount": 429, "open_tree": 428, "fchmod": 52, "fchmodat": 53,
            "fchmodat2": 452, "fchownat": 54, "fchown": 55, "utimensat": 88,
        },
    ),
}
_ARCHES["arm64"] = _ARCHES["aarch64"]


def _arch(machine: str | None = None) -> _Arch:
    name = machine or platform.machine()
    try:
        return _ARCHES[name]
    except KeyError:
        raise OSError(
            errno.ENOSYS, f"the sandbox knows the system calls of x86_64 and aarch64, not {name}"
        ) from None


# ---------------------------------------------------------------- seccomp


def seccomp_program(machine: str | None = None) -> list[tuple[int, int, int, int]]:
    """The classic-BPF filter, as ``(code, jt, jf, k)`` instructions, for ``machine``.

    It checks the architecture first (another one is killed: its numbers mean
    other calls), refuses x32 calls on x86_64, then answers EPERM to each call
    of :data:`REFUSED` and allows the rest. Pure data, so it can be tested.
    """
    arch = _arch(machine)
    # aarch64 has only the *at forms of some calls (no chmod, chown, utime).
    numbers = sorted({arch.refused[name] for name in REFUSED if name in arch.refused})
    eperm = _RET_ERRNO | errno.EPERM
    program = [
        (_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_JEQ_K, 1, 0, arch.audit),
        (_RET_K, 0, 0, _RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
    ]
    if arch.x32:
        program += [(_JGE_K, 0, 1, 0x40000000), (_RET_K, 0, 0, eperm)]
    # Each test jumps over the ones after it to the shared EPERM return.
    for index, number in enumerate(numbers):
        program.append((_JEQ_K, len(numbers) - index, 0, number))
    program += [(_RET_K, 0, 0, _RET_ALLOW), (_RET_K, 0, 0, eperm)]
    return program


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _syscall(number: int, *args: object) -> int:
    result = int(_load_libc().syscall(ctypes.c_long(number), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _no_new_privs() -> None:
    if _load_libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(code)}")


def confine_syscalls() -> None:
    """Install :func:`seccomp_program` on every thread of this process (irrevocable).

    Raises:
        OSError: the architecture is unknown or the kernel refused the filter.
    """
    arch = _arch()
    program = seccomp_program()
    filters = (_SockFilter * len(program))(*(_SockFilter(*ins) for ins in program))
    fprog = _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    _no_new_privs()
    _syscall(arch.seccomp, ctypes.c_uint(_SECCOMP_SET_MODE_FILTER),
             ctypes.c_uint(_SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog))


# ---------------------------------------------------------------- Landlock


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers; 0 where it has none (or it is off)."""
    try:
        arch = _arch()
        return _syscall(arch.landlock[0], None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError:
        return 0


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


#: Directories a kernel may read besides its scratch directory and the ones Python
#: loads code from (:func:`readable`): the system's libraries, data and devices.
SYSTEM_READABLE = ("/usr", "/lib", "/lib64", "/lib32", "/etc", "/proc", "/sys", "/dev", "/opt")


def readable() -> list[str]:
    """What a sandboxed kernel may read: Python's own directories and :data:`SYSTEM_READABLE`.

    Not the server user's home, the server's key and connection files, other
    kernels' scratch directories or /tmp: a client's code must not read the
    admin key and come back as an admin. The directory the server was started
    in is left out too, though ``python -m`` put it on ``sys.path``.
    """
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, *SYSTEM_READABLE]
    seen: list[str] = [os.path.realpath(os.getcwd())]
    for path in paths:
        real = os.path.realpath(path) if path else ""
        if real and os.path.exists(real) and real not in seen:
            seen.append(real)
    return seen[1:]


def _add_path_rule(arch: _Arch, ruleset: int, path: str, access: int) -> None:
    flags = os.O_PATH | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        if not os.path.isdir(path):
            access &= _FS_READ_FILE | _FS_WRITE_FILE | _FS_EXECUTE | _FS_TRUNCATE
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
        _syscall(arch.landlock[1], ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                 rule, ctypes.c_uint32(0))
    finally:
        os.close(fd)


def confine_files(
    scratch: str, tcp_port: int | None = None, reads: Sequence[str] | None = None
) -> int:
    """Allow writes only beneath ``scratch``, no execution, no TCP but ``tcp_port``.

    Reads are allowed beneath ``scratch`` and ``reads`` (:func:`readable` by default).

    Must run while the process has one thread: Landlock confines the calling
    thread (and those it starts later), and ABI 7 cannot reach the others.

    Returns:
        The Landlock ABI used.

    Raises:
        OSError: no Landlock, more than one thread, or a call failed.
    """
    arch = _arch()
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.ENOSYS, "this Linux kernel has no Landlock (or it is turned off)")
    if _thread_count() != 1:
        raise OSError(errno.EBUSY, "Landlock must be applied while the kernel has one thread")
    write = (_FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE_CHAR | _FS_MAKE_DIR
             | _FS_MAKE_REG | _FS_MAKE_SOCK | _FS_MAKE_FIFO | _FS_MAKE_BLOCK | _FS_MAKE_SYM)
    if abi >= 2:
        write |= _FS_REFER
    if abi >= 3:
        write |= _FS_TRUNCATE
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0
    read = _FS_READ_FILE | _FS_READ_DIR
    attr = struct.pack("=QQQ", write | read | _FS_EXECUTE, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buffer = ctypes.create_string_buffer(attr[:size], size)
    ruleset = _syscall(arch.landlock[0], buffer, ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        _add_path_rule(arch, ruleset, scratch, write | read)
        for path in readable() if reads is None else reads:
            _add_path_rule(arch, ruleset, path, read)
        if net and tcp_port is not None:
            port = ctypes.create_string_buffer(struct.pack("=QQ", _NET_CONNECT_TCP, tcp_port), 16)
            _syscall(arch.landlock[1], ctypes.c_int(ruleset), ctypes.c_int(_RULE_NET_PORT),
                     port, ctypes.c_uint32(0))
        _no_new_privs()
        _syscall(arch.landlock[2], ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return abi


#: The scratch directory this process is confined to, once it is (see :func:`enter`).
_entered: str | None = None
_reads: tuple[str, ...] = ()


def allowed_reads() -> tuple[str, ...]:
    """The directories beside the scratch one this process may read (once :func:`enter` ran)."""
    return _reads


def enter(scratch: str, tcp_port: int | None = None) -> None:
    """Confine files now (one thread) and point the process's temporary files at ``scratch``.

    A second call (a kernel started by :func:`main`, confined before it
    loaded the backend and its threads) only checks it is the same directory.
    :func:`confine_syscalls` must follow once connected.
    """
    global _entered, _reads
    if _entered is not None:
        if _entered != scratch:
            raise OSError(errno.EINVAL, f"this process is already confined to {_entered}")
        return
    reads = tuple(readable())
    confine_files(scratch, tcp_port, reads)
    _entered, _reads = scratch, reads
    os.chdir(scratch)
    os.environ["TMPDIR"] = scratch
    import tempfile

    tempfile.tempdir = scratch


# ---------------------------------------------------------------- messages

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: Audit events of programs and sockets, and what the user is told they tried.
_ALWAYS_REFUSED = {
    "os.system": "running a program", "subprocess.Popen": "running a program",
    "os.exec": "running a program", "os.posix_spawn": "running a program",
    "os.spawn": "running a program", "os.fork": "starting a process",
    "socket.__new__": "opening a network connection",
    "socket.connect": "opening a network connection",
    "socket.bind": "opening a network connection",
    "os.chmod": "changing a file's permissions", "os.chown": "changing a file's owner",
    "os.utime": "changing a file's dates",
}
#: Audit events that change the file system, and which arguments are paths.
_PATH_EVENTS = {
    "os.mkdir": (0,), "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1),
    "os.replace": (0, 1), "os.link": (0, 1), "os.symlink": (1,), "os.truncate": (0,),
    "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.move": (0, 1),
    "shutil.rmtree": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
}

#: Every audit event :func:`refusal` looks at (a hook tests this set first: it is cheap).
AUDITED = frozenset({"open", *_ALWAYS_REFUSED, *_PATH_EVENTS})


def _outside(path: object, scratch: str, *more: str) -> bool:
    if isinstance(path, int):  # a descriptor: already open, the OS judged it then
        return False
    try:
        real = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return not any(
        real == base or real.startswith(base.rstrip(os.sep) + os.sep) for base in (scratch, *more)
    )


def refusal(
    event: str, args: tuple[object, ...], scratch: str, reads: Sequence[str] = ()
) -> str | None:
    """What the sandbox refuses in the audit event ``event`` (``sys.addaudithook``), or None.

    The operating system refuses it anyway; this only lets a kernel say so
    in words (``LinkServer::sandbox``) instead of a bare "permission denied".
    ``reads``: the directories it may read besides ``scratch``; empty to judge
    writes only.
    """
    if event in _ALWAYS_REFUSED:
        return _ALWAYS_REFUSED[event]
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing and _outside(path, scratch):
            return f"writing {os.fsdecode(path)}"  # type: ignore[arg-type]
        if not writing and reads and _outside(path, scratch, *reads):
            return f"reading {os.fsdecode(path)}"  # type: ignore[arg-type]
        return None
    positions = _PATH_EVENTS.get(event)
    if positions is not None:
        for position in positions:
            if position < len(args) and _outside(args[position], scratch):
                return f"changing {os.fsdecode(args[position])}"  # type: ignore[arg-type]
    return None


# ---------------------------------------------------------------- probe


def probe(scratch: str) -> str | None:
    """Try the whole sandbox in a throw-away process; None if it held, else why not.

    The child confines itself to ``scratch`` and then checks that a write
    outside it, a new socket and running a program are all refused.
    """
    try:
        result = subprocess.run(
            [sys.executable, "-m", "linkserver.kernel.sandbox", "--probe", scratch],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the sandbox probe could not run ({exc})"
    if result.returncode == 0 and result.stdout.strip() == "sandboxed":
        return None
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else f"the sandbox probe exited with code {result.returncode}"


def _probe_main(scratch: str) -> int:
    try:
        enter(scratch)
        confine_syscalls()
    except OSError as exc:
        print(exc.strerror or str(exc))
        return 1
    parent = os.path.dirname(os.path.abspath(scratch))
    outside = os.path.join(parent, "linkserver-probe-outside")
    import socket

    checks: dict[str, Callable[[], object]] = {
        "a write outside the scratch directory": lambda: open(outside, "w").close(),
        "a read outside the readable directories": lambda: os.listdir(parent),
        "a new socket": lambda: socket.socket().close(),
        "running a program": lambda: subprocess.run(["/bin/true"], check=False),
    }
    for what, attempt in checks.items():
        try:
            attempt()
        except PermissionError:
            continue
        print(f"the sandbox did not refuse {what}")
        return 1
    with open(os.path.join(scratch, "probe"), "w") as file:
        file.write("ok")
    print("sandboxed")
    return 0


def _option(args: Sequence[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
        if arg == name and index + 1 < len(args):
            return args[index + 1]
    return None


def _run_kernel(module: str, args: list[str]) -> int:
    """Confine files, then run the kernel ``module`` with ``args`` as its command line.

    A fresh kernel process loads Mathics3, which starts threads (a numeric
    library's) that Landlock could no longer reach; so a sandboxed kernel that
    is not forked from a template starts here, confined before any import.
    """
    scratch = _option(args, "--sandbox")
    if scratch is None:
        print("--kernel needs the kernel's --sandbox DIR option", file=sys.stderr)
        return 2
    port, at, _host = (_option(args, "--connect") or "").partition("@")
    # Run as ``-m``, this file is __main__: mark the module the kernel imports.
    from linkserver.kernel import sandbox as imported

    try:
        imported.enter(os.path.realpath(scratch), int(port) if at and port.isdigit() else None)
    except OSError as exc:
        print(f"kernel.sandbox.failed: {exc.strerror or exc}", file=sys.stderr)
        return 3  # as a kernel that could not start
    import runpy

    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``--probe DIR``: check the sandbox holds here; ``--kernel MODULE ARGS...``: run a kernel."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "--kernel":
        return _run_kernel(args[1], args[2:])
    if len(args) != 2 or args[0] != "--probe":
        print("usage: python -m linkserver.kernel.sandbox --probe DIR | --kernel MODULE ARGS...",
              file=sys.stderr)
        return 2
    return _probe_main(args[1])


if __name__ == "__main__":
    sys.exit(main())
