"""A sandboxed server (``serve --sandbox``): every escape fails, evaluation still works.

The kernels run Mathics3 under Landlock and seccomp (linkserver.kernel.sandbox).
Each route out is tried from Wolfram Language and, through ``LoadModule`` of a
crafted Python module, from Python itself -- with raw system calls through
ctypes, which no audit hook sees -- so what holds is the operating system.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import linkserver
from linkserver.config import PoolConfig, ServerConfig
from linkserver.kernel import sandbox
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.integration.test_examples import ROOT
from tests.timeouts import TIMEOUT, wait_until

KERNEL_TIMEOUT = TIMEOUT * 6  # a kernel template takes seconds to load Mathics3

if sandbox.landlock_abi() < 1 or sys.platform != "linux":
    pytest.skip("this machine's Linux has no Landlock, so no kernel sandbox", allow_module_level=True)

# Run inside the kernel by LoadModule: each attempt with raw libc calls (and some
# through Python, which the kernel's audit hook also sees); the outcome of each is
# written to escape.json in the working directory, the kernel's scratch directory.
ESCAPE_MODULE = r'''
import ctypes, errno, json, os, socket, subprocess
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = os.environ["SANDBOX_TEST_OUTSIDE"]
victim = os.environ["SANDBOX_TEST_VICTIM"]
port = int(os.environ["SANDBOX_TEST_PORT"])
server = int(os.environ["SANDBOX_TEST_SERVER_PID"])
results = {}

def raw(name, value):
    results[name] = "refused" if value < 0 else "done"

def python(name, call):
    try:
        call()
        results[name] = "done"
    except OSError:
        results[name] = "refused"

O_WRONLY, O_CREAT = 0o1, 0o100
raw("raw-open-outside", libc.open((out + "/raw").encode(), O_WRONLY | O_CREAT, 0o644))
raw("raw-open-victim", libc.open(victim.encode(), O_WRONLY, 0))
raw("raw-read-victim", libc.open(victim.encode(), 0, 0))
python("python-listdir-outside", lambda: os.listdir(out))
python("python-read-scratch-parent", lambda: os.listdir(".."))
raw("raw-mkdir", libc.mkdir((out + "/dir").encode(), 0o755))
raw("raw-unlink", libc.unlink(victim.encode()))
raw("raw-rename", libc.rename(victim.encode(), b"moved"))
raw("raw-hardlink", libc.link(victim.encode(), b"linked"))
os.symlink(victim, "symlinked")  # in the scratch directory: allowed, but not the write
raw("write-through-symlink", libc.open(b"symlinked", O_WRONLY, 0))
raw("raw-chmod", libc.chmod(victim.encode(), 0o777))
raw("raw-truncate", libc.truncate(victim.encode(), 0))
argv = (ctypes.c_char_p * 4)(b"/bin/sh", b"-c", ("touch " + out + "/exec").encode(), None)
raw("raw-execve", libc.execve(b"/bin/sh", argv, None))
for family, kind, name in ((2, 1, "tcp"), (2, 2, "udp"), (10, 1, "tcp6"), (1, 1, "unix"),
                           (16, 3, "netlink"), (17, 3, "packet")):
    raw("raw-socket-" + name, libc.socket(family, kind, 0))
raw("raw-ptrace", libc.ptrace(16, server, None, None))
raw("raw-kill-server", libc.kill(server, 0))
raw("io_uring_setup", libc.syscall(425, 8, ctypes.create_string_buffer(120)))
raw("unshare-net", libc.unshare(0x40000000))
python("python-open", lambda: open(out + "/python", "w").close())
python("python-subprocess", lambda: subprocess.run(["/bin/true"], check=True))
python("python-os-system", lambda: os.system("touch " + out + "/system") or 0)
python("python-connect", lambda: socket.create_connection(("127.0.0.1", port), 2).close())
python("python-fork-exec", lambda: os.posix_spawn("/bin/true", ["true"], {}))
with open("in-scratch.txt", "w") as f:  # the one place it may write
    f.write("fine")
results["scratch-write"] = "done"
with open("escape.json", "w") as f:
    json.dump(results, f)
'''


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the kernels must not change, with one file in it."""
    path = tmp_path_factory.mktemp("outside")
    (path / "victim.txt").write_text("keep me")
    return path


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    """A TCP port on this machine that no kernel may reach."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        yield sock


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, outside: Path, listener: socket.socket
) -> Iterator[KernelService]:
    modules = tmp_path_factory.mktemp("modules")
    (modules / "sandbox_escape.py").write_text(ESCAPE_MODULE)
    saved = dict(os.environ)
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(modules)])),
        SANDBOX_TEST_OUTSIDE=str(outside), SANDBOX_TEST_VICTIM=str(outside / "victim.txt"),
        SANDBOX_TEST_PORT=str(listener.getsockname()[1]), SANDBOX_TEST_SERVER_PID=str(os.getpid()),
    )
    try:
        config = ServerConfig((PoolConfig("default", "pool", min=1, max=2, sandbox=True),))
        started = KernelService(0, "127.0.0.1", config=config)
        service = get_portal().call(started.start(), timeout=KERNEL_TIMEOUT)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def nothing_escaped(outside: Path, listener: socket.socket) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "keep me"
    assert (outside / "victim.txt").stat().st_mode & 0o777 != 0o777
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_evaluation_definitions_and_the_scratch_directory_work(service: KernelService) -> None:
    with linkserver.Client(service.name, timeout=KERNEL_TIMEOUT) as client:
        assert client.evaluate("1 + 1") == 2
        client.evaluate("f[x_] := x^2")
        assert client.evaluate("f[12]") == 144
        scratch = client.evaluate("$TemporaryDirectory")
        assert client.evaluate("Directory[]") == scratch
        assert os.path.isdir(scratch) and "scratch" in scratch
        target = os.path.join(scratch, "data.txt")
        assert client.evaluate(f'Export["{target}", "hello"]') == target
        assert client.evaluate(f'Import["{target}"]') == "hello"
        assert client.evaluate('Put[{1, 2}, "rel.m"]; Get["rel.m"]') == (1, 2)
        client.evaluate(f's = OpenWrite["{scratch}/w.txt"]; Write[s, 42]; Close[s]')
        assert Path(scratch, "w.txt").read_text().strip() == "42"
        assert client.evaluate(f'CreateDirectory["{scratch}/sub"]') == f"{scratch}/sub"
        assert client.evaluate(f'DeleteFile["{target}"]') is None or not os.path.exists(target)
        assert not os.path.exists(target)
    # The kernel ends with its client's link, and its scratch directory with it.
    assert wait_until(lambda: not os.path.exists(scratch), KERNEL_TIMEOUT), scratch


# (code, True if the answer must carry LinkServer::sandbox): Mathics3 lacks some
# built-ins (Save, DumpSave, Splice, WriteString to a file name...) or fails
# before touching a file; for those only "nothing changed outside" is asserted.
WRITES = [
    ('Export["{out}/e.txt", "x"]', True),
    ('Export["{out}/e.png", Graphics[Disk[]]]', False),
    ('OpenWrite["{out}/o.txt"]', True),
    ('OpenAppend["{victim}"]', True),
    ('Put[1, "{out}/p.m"]', True),
    ('PutAppend[1, "{victim}"]', True),
    ('WriteString["{out}/w.txt", "x"]', False),
    ('BinaryWrite["{out}/b.bin", {{1, 2}}]', False),
    ('CreateDirectory["{out}/d"]', True),
    ('CreateFile["{out}/c"]', True),
    ('DeleteFile["{victim}"]', True),
    ('DeleteDirectory["{out}", DeleteContents -> True]', True),
    ('CopyFile["{victim}", "{out}/copy"]', True),
    ('RenameFile["{victim}", "{out}/renamed"]', True),
    ('CopyDirectory["{out}", "{out}2"]', True),
    ('SetFileDate["{victim}", {{2000, 1, 1}}]', True),
    ('Save["{out}/s.m", f]', False),
    ('DumpSave["{out}/d.mx", f]', False),
    ('Splice["{victim}", "{out}/sp"]', False),
    # Reading too: the server's key and connection files must stay out of reach.
    ('Import["{victim}", "Text"]', True),
    ('ReadList["{victim}", String]', True),
    ('FileNames["*", "{out}"]', False),
]

PROGRAMS = [
    ('Run["touch {out}/run"]', True),
    ('RunProcess[{{"touch", "{out}/rp"}}]', False),
    ('StartProcess[{{"touch", "{out}/sp"}}]', False),
    ('ReadList["!touch {out}/rl"]', False),
    ('OpenRead["!touch {out}/or"]', False),
    ('Put[1, "!touch {out}/put"]', False),
    ('Get["!touch {out}/get"]', False),
    ('Import["!touch {out}/imp", "Text"]', False),
    ('Install["/bin/sh"]', False),
    ('LinkLaunch["/bin/sh -c \'touch {out}/ll\'"]', False),
    ('SocketConnect[{{"127.0.0.1", {port}}}]', True),
    ('SocketConnect["127.0.0.1:{port}"]', True),
    ('URLRead["http://127.0.0.1:{port}/"]', False),
    ('URLFetch["http://127.0.0.1:{port}/"]', False),
    ('Import["http://127.0.0.1:{port}/x.txt"]', True),
]


def attempt(service: KernelService, code: str) -> tuple[object, str]:
    """Evaluate ``code`` on a fresh kernel of ``service``; the answer and its messages."""
    with linkserver.Client(service.name, timeout=KERNEL_TIMEOUT) as client:
        answer = client.evaluate_wrap(code)
        assert client.evaluate("1 + 1") == 2  # the kernel lives on
    return answer.result, " ".join(str(m) for m in answer.messages)


@pytest.mark.parametrize(("code", "told"), WRITES)
def test_writing_outside_the_scratch_directory_fails(
    service: KernelService, outside: Path, listener: socket.socket, code: str, told: bool
) -> None:
    code = code.format(out=outside, victim=outside / "victim.txt")
    result, said = attempt(service, code)
    nothing_escaped(outside, listener)
    assert not os.path.exists(f"{outside}2")
    assert "keep me" not in str(result)  # nothing read from outside either
    if code.startswith("FileNames"):
        assert "victim" not in str(result), result
    if told:
        assert "LinkServer::sandbox" in said and "sandbox of this server forbids" in said, said


@pytest.mark.parametrize(("code", "told"), PROGRAMS)
def test_programs_and_connections_fail(
    service: KernelService, outside: Path, listener: socket.socket, code: str, told: bool
) -> None:
    code = code.format(out=outside, port=listener.getsockname()[1])
    result, said = attempt(service, code)
    nothing_escaped(outside, listener)
    if told:
        assert "LinkServer::sandbox" in said and "forbids" in said, said
        assert str(result) == "$Failed"


def test_a_crafted_file_read_by_get_is_confined_too(
    service: KernelService, outside: Path, listener: socket.socket
) -> None:
    with linkserver.Client(service.name, timeout=KERNEL_TIMEOUT) as client:
        client.evaluate(
            f'Export["evil.m", "Export[\\"{outside}/g.txt\\", 1]; 7", "Text"]'
        )
        answer = client.evaluate_wrap('Get["evil.m"]')
    assert any("LinkServer::sandbox" in str(m) for m in answer.messages), answer
    nothing_escaped(outside, listener)


def test_python_reached_through_loadmodule_is_confined_by_the_os(
    service: KernelService, outside: Path, listener: socket.socket
) -> None:
    with linkserver.Client(service.name, timeout=KERNEL_TIMEOUT) as client:
        scratch = client.evaluate("$TemporaryDirectory")
        client.evaluate_wrap('LoadModule["sandbox_escape"]')
        assert client.evaluate("1 + 1") == 2  # not replaced by /bin/sh, not dead
        results = json.loads(Path(scratch, "escape.json").read_text())
    assert results.pop("scratch-write") == "done"
    assert results and set(results.values()) == {"refused"}, results
    nothing_escaped(outside, listener)


def test_kernels_started_fresh_are_sandboxed_too(outside: Path) -> None:
    config = ServerConfig((PoolConfig("default", "shared", sandbox=True),))
    service = get_portal().call(
        KernelService(0, "127.0.0.1", config=config, zygote=False).start(), timeout=KERNEL_TIMEOUT
    )
    try:
        with linkserver.Client(service.name, timeout=KERNEL_TIMEOUT) as client:
            assert client.evaluate("1 + 1") == 2
            answer = client.evaluate_wrap(f'Export["{outside}/fresh.txt", "x"]')
            assert any("LinkServer::sandbox" in str(m) for m in answer.messages), answer
            answer = client.evaluate_wrap('Run["true"]')
            assert any("LinkServer::sandbox" in str(m) for m in answer.messages), answer
            scratch = client.evaluate("$TemporaryDirectory")
            assert os.path.isdir(scratch)
    finally:
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)
    assert not os.path.exists(scratch)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_serve_sandbox_refuses_a_backend_it_cannot_confine() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--no-key", "--sandbox",
         "--kernel", "wolfram"],
        cwd=ROOT, capture_output=True, text=True, timeout=KERNEL_TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sandbox" in lines[0] and "mathics" in lines[0], done.stderr
