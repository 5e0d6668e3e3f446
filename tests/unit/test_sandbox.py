"""The kernel sandbox's parts: the seccomp BPF program, the audit-event judge, the settings."""

from __future__ import annotations

import asyncio
import errno
import os
import struct
from pathlib import Path

import pytest

from linkserver.config import ConfigError, parse_config
from linkserver.errors import SandboxError
from linkserver.kernel import sandbox
from linkserver.launcher.local import LocalLauncher
from linkserver.launcher.spec import KernelSpec

AUDIT = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# A few calls every kernel needs, which the filter must let through.
ALLOWED = {
    "x86_64": {"read": 0, "write": 1, "openat": 257, "mmap": 9, "futex": 202, "clone": 56,
               "connect": 42, "socketpair": 53, "landlock_restrict_self": 446},
    "aarch64": {"read": 63, "write": 64, "openat": 56, "mmap": 222, "futex": 98, "clone": 220,
                "connect": 203, "socketpair": 199, "landlock_restrict_self": 446},
}
KILL, ALLOW, EPERM = 0x80000000, 0x7FFF0000, 0x00050000 | errno.EPERM


def run_bpf(program: list[tuple[int, int, int, int]], nr: int, arch: int) -> int:
    """Interpret the classic-BPF subset the builder emits over one seccomp_data."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *([0] * 6))
    pc, accumulator = 0, 0
    for _ in range(len(program) + 1):
        code, jt, jf, k = program[pc]
        if code == 0x20:  # ld [k]
            (accumulator,) = struct.unpack_from("=I", data, k)
            pc += 1
        elif code in (0x15, 0x35):  # jeq / jge
            taken = accumulator == k if code == 0x15 else accumulator >= k
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:  # ret k
            return k
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
        assert 0 <= pc < len(program), "a jump left the program"
    raise AssertionError("the program did not return")


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_refuses_the_listed_calls_and_allows_the_rest(machine: str) -> None:
    program = sandbox.seccomp_program(machine)
    numbers = sandbox._ARCHES[machine].refused
    audit = AUDIT[machine]
    for name in ("execve", "execveat", "socket", "ptrace", "io_uring_setup", "bpf", "unshare"):
        assert run_bpf(program, numbers[name], audit) == EPERM, name
    for name, number in numbers.items():
        assert run_bpf(program, number, audit) == EPERM, name
    for name, number in ALLOWED[machine].items():
        assert run_bpf(program, number, audit) == ALLOW, name
    # Another architecture's call means another call: the process is killed.
    other = AUDIT["aarch64" if machine == "x86_64" else "x86_64"]
    assert run_bpf(program, ALLOWED[machine]["read"], other) == KILL
    assert run_bpf(program, numbers["execve"], 0x40000003) == KILL  # i386


def test_x32_calls_are_refused_on_x86_64() -> None:
    program = sandbox.seccomp_program("x86_64")
    assert run_bpf(program, 0x40000000 | 59, AUDIT["x86_64"]) == EPERM  # x32 execve
    assert run_bpf(program, 0x40000000, AUDIT["x86_64"]) == EPERM


def test_every_refused_name_has_a_number_where_the_call_exists() -> None:
    for machine in ("x86_64", "aarch64"):
        numbers = sandbox._ARCHES[machine].refused
        assert set(numbers) <= set(sandbox.REFUSED)
        for core in ("execve", "execveat", "socket", "ptrace", "io_uring_setup", "fchmodat"):
            assert core in numbers, (machine, core)
    with pytest.raises(OSError, match="x86_64 and aarch64"):
        sandbox.seccomp_program("riscv64")


def test_refusal_names_what_the_sandbox_forbids(tmp_path: Path) -> None:
    scratch = str(tmp_path / "scratch")
    os.mkdir(scratch)
    inside, outside = f"{scratch}/a.txt", str(tmp_path / "b.txt")
    assert sandbox.refusal("open", (inside, "w", os.O_WRONLY), scratch) is None
    assert sandbox.refusal("open", (outside, "r", os.O_RDONLY), scratch) is None
    assert sandbox.refusal("open", (outside, "w", os.O_WRONLY), scratch) == f"writing {outside}"
    assert sandbox.refusal("open", (outside, None, os.O_CREAT | os.O_RDWR), scratch)
    assert sandbox.refusal("open", (3, "w", os.O_WRONLY), scratch) is None  # a descriptor
    assert sandbox.refusal("os.mkdir", (outside, 0o777, -1), scratch)
    assert sandbox.refusal("os.rename", (inside, outside, -1, -1), scratch)
    assert sandbox.refusal("os.remove", (inside, -1), scratch) is None
    assert sandbox.refusal("subprocess.Popen", ("ls", ["ls"], None, None), scratch) == (
        "running a program"
    )
    assert sandbox.refusal("socket.__new__", (None, 2, 1, 0), scratch)
    # A symbolic link out of the scratch directory is outside.
    os.symlink(tmp_path, f"{scratch}/up")
    assert sandbox.refusal("open", (f"{scratch}/up/b.txt", "a", 0), scratch)
    assert sandbox.refusal("import", ("x",), scratch) is None
    assert {"open", "os.system", "shutil.rmtree"} <= sandbox.AUDITED


def test_the_probe_confines_a_real_process_here(tmp_path: Path) -> None:
    if sandbox.landlock_abi() < 1:
        pytest.skip("this machine's Linux has no Landlock")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert sandbox.probe(str(scratch)) is None
    assert (scratch / "probe").read_text() == "ok"
    assert not (tmp_path / "linkserver-probe-outside").exists()


def test_sandbox_in_the_configuration() -> None:
    config = parse_config({"pools": {"a": {"sandbox": True}, "b": {}}})
    assert [p.sandbox for p in config.pools] == [True, False]
    assert config.pools[0].spec().sandbox
    with pytest.raises(ConfigError, match=r"pools.a.sandbox must be bool"):
        parse_config({"pools": {"a": {"sandbox": "yes"}}})
    with pytest.raises(ConfigError, match=r"pools.a.sandbox is for backend"):
        parse_config({"pools": {"a": {"sandbox": True, "backend": "wolfram"}}})
    with pytest.raises(ConfigError, match=r"pools.a.min must be int"):
        parse_config({"pools": {"a": {"min": True}}})  # bools are still no numbers


def test_a_sandboxed_kernel_starts_confined_before_it_loads_the_backend() -> None:
    spec = KernelSpec(sandbox=True)
    argv = spec.argv("unix:/k.sock", "k1", "/s/k1")
    assert argv[1:5] == ["-m", "linkserver.kernel.sandbox", "--kernel", "linkserver.kernel.mathics"]
    assert "--sandbox=/s/k1" in argv
    assert KernelSpec().argv("unix:/k.sock", "k1")[1:3] == ["-m", "linkserver.kernel.mathics"]
    with pytest.raises(ValueError, match="mathics backend"):
        KernelSpec("wolfram", sandbox=True)


def test_serve_refuses_to_start_where_the_sandbox_cannot_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "probe", lambda _scratch: "this Linux kernel has no Landlock")
    launcher = LocalLauncher(KernelSpec(sandbox=True), zygote=False)
    with pytest.raises(SandboxError) as caught:
        asyncio.run(launcher.start())
    message = str(caught.value)
    assert "no Landlock" in message and "--sandbox" in message and "sandbox = true" in message and message.count(". ") == 0
