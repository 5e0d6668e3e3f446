"""Kernels behind the server: shared and pool modes, end to end with Mathics3."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLSymbol

import linkserver
from linkserver.config import PoolConfig, ServerConfig
from linkserver.portal import get_portal
from linkserver.service import KernelService
from linkserver.status import STATUS_MESSAGE
from tests.packets import collect
from tests.timeouts import TIMEOUT

KERNEL_TIMEOUT = TIMEOUT * 6  # a kernel template takes seconds to load Mathics3


def start_service(**kwargs: object) -> KernelService:
    service = KernelService(0, "127.0.0.1", **kwargs)  # type: ignore[arg-type]
    return get_portal().call(service.start(), timeout=KERNEL_TIMEOUT)


@pytest.fixture(scope="module")
def shared() -> Iterator[KernelService]:
    service = start_service(mode="shared")
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


@pytest.fixture(scope="module")
def pool() -> Iterator[KernelService]:
    # Two named pools: the default gives each client its own kernel; "calc" is shared.
    config = ServerConfig((
        PoolConfig("iso", "pool", min=1, max=2, wait=0.5, keepalive=60, init="initValue = 7"),
        PoolConfig("calc", "shared", memory_mb=1500),
    ), "iso")
    service = start_service(config=config)
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def evaluate(link: linkserver.Link, expr: object) -> list[object]:
    """Send EvaluatePacket[expr]; return every packet up to and including ReturnPacket."""
    link.put(wl.EvaluatePacket(expr))
    return collect(link, "ReturnPacket", KERNEL_TIMEOUT)


def test_state_is_shared_between_clients(shared: KernelService) -> None:
    with linkserver.Client(shared.name) as a, linkserver.Client(shared.name) as b:
        a.evaluate("sharedX = 42")
        assert b.evaluate("sharedX") == 42


def test_side_output_goes_only_to_the_asker(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as a, linkserver.connect(shared.name) as b:
        assert evaluate(a, wlexpr('Print["for a"]; 1')) == [wl.TextPacket("for a"), wl.ReturnPacket(1)]
        assert evaluate(b, wlexpr("2")) == [wl.ReturnPacket(2)]
        assert not a.ready() and not b.ready()


def test_evaluate_wrap_gathers_messages_and_prints(shared: KernelService) -> None:
    with linkserver.Client(shared.name) as client:
        result = client.evaluate_wrap('Print["one"]; Print["two"]; 1/0')
        assert result.printed == ["one", "two"] == result.output
        assert result.messages_name == ["Power::infy"]
        assert len(result.messages) == 1 and "nfinite" in result.messages[0]
        assert not result.success
        assert result.result == wl.DirectedInfinity() or result.result == WLSymbol("ComplexInfinity")
        ok = client.evaluate_wrap(wl.Plus(1, 1))
        assert ok.success and ok.result == 2


def test_plain_expression_is_evaluated(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as link:
        link.put(wl.Plus(1, 2))  # not a packet: treated as EvaluatePacket
        assert link.get(KERNEL_TIMEOUT) == wl.ReturnPacket(3)


def test_enter_text_numbers_inputs(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as link:
        link.put(wl.EnterTextPacket("1+1"))
        out_name, text, in_name = (link.get(KERNEL_TIMEOUT) for _ in range(3))
        assert out_name.head.name == "OutputNamePacket" and text == wl.ReturnTextPacket("2")
        n = int(out_name.args[0].split("[")[1].split("]")[0])
        assert in_name == wl.InputNamePacket(f"In[{n + 1}]:= ")


def test_fair_queue_lets_a_single_request_through(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as greedy, linkserver.connect(shared.name) as single:
        evaluate(greedy, wlexpr("fairLog = {}"))
        greedy.put(wl.EvaluatePacket(wlexpr('Pause[0.5]; AppendTo[fairLog, "g0"]')))
        for i in range(1, 10):
            greedy.put(wl.EvaluatePacket(wlexpr(f'AppendTo[fairLog, "g{i}"]')))
        greedy.flush()
        evaluate(single, wlexpr('AppendTo[fairLog, "s"]; 0'))
        for _ in range(10):
            greedy.get(KERNEL_TIMEOUT)
        log = evaluate(single, wlexpr("fairLog"))[-1].args[0]  # type: ignore[attr-defined]
        assert len(log) == 11
        assert log.index("s") <= 2, log  # served in turn, not after all of greedy's


def test_abort_returns_aborted_and_kernel_stays(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as link:
        link.put(wl.EvaluatePacket(wlexpr('Print["started"]; While[True, 1]')))
        assert link.get(KERNEL_TIMEOUT) == wl.TextPacket("started")
        link.abort()
        assert link.get(KERNEL_TIMEOUT) == wl.ReturnPacket(WLSymbol("$Aborted"))
        assert evaluate(link, wl.Plus(1, 1)) == [wl.ReturnPacket(2)]


def test_abort_of_a_queued_request_answers_it_and_keeps_the_rest(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as busy, linkserver.connect(shared.name) as link:
        busy.put(wl.EvaluatePacket(wlexpr('Print["busy"]; Pause[1]; 0')))
        assert busy.get(KERNEL_TIMEOUT) == wl.TextPacket("busy")
        for i in (1, 2, 3):
            link.put(wl.EvaluatePacket(i))
        link.flush()  # the requests are on their way before the abort overtakes them
        link.abort()
        answers = [link.get(KERNEL_TIMEOUT) for _ in range(3)]
        assert answers == [wl.ReturnPacket(WLSymbol("$Aborted")), wl.ReturnPacket(2),
                           wl.ReturnPacket(3)]
        assert busy.get(KERNEL_TIMEOUT) == wl.ReturnPacket(0)


def test_client_vanishing_mid_evaluation_costs_nothing_more(shared: KernelService) -> None:
    leaving = linkserver.connect(shared.name)
    leaving.put(wl.EvaluatePacket(wlexpr('Print["busy"]; While[True, 1]')))
    assert leaving.get(KERNEL_TIMEOUT) == wl.TextPacket("busy")
    leaving.close()
    with linkserver.Client(shared.name) as other:
        assert other.evaluate("1+1") == 2


def test_input_is_answered_by_the_asking_client(shared: KernelService) -> None:
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return "6*7"

    with linkserver.Client(shared.name, on_input=answer) as client:
        assert client.evaluate('Input["number? "] + 1') == 43
    assert prompts == ["number? "]


def test_aborting_a_request_that_waits_for_input_keeps_the_link_served(
    shared: KernelService,
) -> None:
    # The broker passes the asking link's next packet to the kernel as the
    # answer to Input[]; once the request has its final answer ($Aborted
    # here), the next packet is a request again, not a stray input answer.
    with linkserver.connect(shared.name, timeout=TIMEOUT) as link:
        link.put(wl.EvaluatePacket(wlexpr('Input["?"]')))
        assert link.get(KERNEL_TIMEOUT) == wl.InputPacket("?")
        link.abort()
        assert link.get(KERNEL_TIMEOUT) == wl.ReturnPacket(WLSymbol("$Aborted"))
        assert evaluate(link, wlexpr("1+1"))[-1] == wl.ReturnPacket(2)


def test_status_message_is_answered(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as link:
        link.send_message(STATUS_MESSAGE)
        status = link.get(KERNEL_TIMEOUT)
        info = status.args[0]
        assert info["mode"] == "shared" and info["kernels"] == 1 and info["links"] >= 1


def test_killed_kernel_costs_one_error_and_is_replaced(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as link:
        evaluate(link, wlexpr("beforeDeath = 1"))
        link.put(wl.EvaluatePacket(wlexpr('Print["running"]; While[True, 1]')))
        assert link.get(KERNEL_TIMEOUT) == wl.TextPacket("running")
        kernel = shared.broker._worker.kernel  # type: ignore[union-attr]
        assert kernel is not None
        get_portal().call_soon(kernel.kill)
        answer = [link.get(KERNEL_TIMEOUT) for _ in range(3)]
        assert answer[0] == wl.MessagePacket(wl.LinkServer, "kerneldied")
        assert "kernel died" in answer[1].args[0]
        assert answer[2] == wl.ReturnPacket(WLSymbol("$Failed"))
        # A fresh kernel serves the next request; the old definitions are gone.
        assert evaluate(link, wlexpr("beforeDeath"))[-1] == wl.ReturnPacket(wl.beforeDeath)


def test_many_clients_at_once_each_get_their_own_answers(shared: KernelService) -> None:
    results: dict[int, object] = {}

    def work(i: int) -> None:
        with linkserver.Client(shared.name) as client:
            results[i] = [client.evaluate(wl.Times(i, j)) for j in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(KERNEL_TIMEOUT)
    assert results == {i: [i * j for j in range(5)] for i in range(8)}


class _GaveUp(Exception):
    """Raised in the caller's thread in the middle of an answer, as Ctrl-C would be."""


def test_an_answer_given_up_half_way_is_not_taken_for_the_next(shared: KernelService) -> None:
    # The blocking client reads its answers in the caller's thread. One given
    # up on half way (an exception from on_input, or a signal's in the middle
    # of a wait) is aborted and read to its end on the loop: the next
    # evaluation gets its own answer, never the rest of the last one.
    def give_up(prompt: str) -> str:
        raise _GaveUp(prompt)

    def interrupt(signum: int, frame: object) -> None:
        raise _GaveUp("signal")

    with linkserver.Client(shared.name, on_input=give_up) as client:
        with pytest.raises(_GaveUp):
            client.evaluate('Print["before"]; x = Input["?"]; "late"')
        assert client.evaluate("1+1") == 2
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(_GaveUp):
                client.evaluate('Print["a"]; Pause[2]; "late"')
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert client.evaluate('"next"') == "next"


def test_one_blocking_client_shared_by_threads_keeps_answers_apart(
    shared: KernelService,
) -> None:
    results: dict[int, list[object]] = {}
    with linkserver.Client(shared.name) as client:

        def work(i: int) -> None:
            results[i] = [client.evaluate(wl.Plus(i * 100, j)) for j in range(20)]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(KERNEL_TIMEOUT)
    assert results == {i: [i * 100 + j for j in range(20)] for i in range(4)}


def test_installing_moves_evaluations_onto_the_loop_and_both_work(shared: KernelService) -> None:
    # Before an install, evaluate reads in the caller's thread; after it, the
    # call server reads the link and evaluations go through the loop.
    with linkserver.Client(shared.name) as client:
        assert client.evaluate("2+2") == 4
        client.install("pyTwice", lambda v: 2 * v)
        assert client.evaluate("pyTwice[21]") == 42
        assert client.evaluate("3+3") == 6


def test_pool_state_never_leaks_between_clients(pool: KernelService) -> None:
    with linkserver.Client(pool.name) as a:
        a.evaluate("poolSecret = 1")
        assert a.evaluate("poolSecret") == 1
        with linkserver.Client(pool.name) as b:
            assert b.evaluate("poolSecret") == wl.poolSecret
    # a's kernel was discarded with a; the next client gets a fresh one.
    with linkserver.Client(pool.name) as c:
        assert c.evaluate("poolSecret") == wl.poolSecret


def test_pool_runs_its_start_up_code_in_every_kernel(pool: KernelService) -> None:
    with linkserver.Client(pool.name) as a, linkserver.Client(pool.name) as b:
        assert a.evaluate("initValue") == 7 and b.evaluate("initValue") == 7
        assert a.kernel_id is None  # nothing was asked of the server but evaluation


def test_named_pool_chosen_by_suffix_or_argument(pool: KernelService) -> None:
    with linkserver.Client(f"{pool.name}/calc") as a, linkserver.Client(pool.name, pool="calc") as b:
        assert a.pool == "calc" and a.kernel_id is not None
        a.evaluate("calcX = 5")
        assert b.evaluate("calcX") == 5  # the same shared kernel
        assert b.kernel_id == a.kernel_id
    with pytest.raises(linkserver.LinkError, match="there is no pool 'nope'") as info:
        linkserver.Client(pool.name, pool="nope")
    assert info.value.code == "select-failed"


def test_memory_limit_costs_one_answer_and_the_kernel_goes_on(pool: KernelService) -> None:
    with linkserver.Client(pool.name, pool="calc") as client:
        # 3 GB of string cannot fit under the pool's 1500 MB address-space limit.
        result = client.evaluate_wrap('StringLength[StringRepeat["x", 3*10^9]]')
        assert not result.success
        assert result.failure and "Memory" in result.failure
        assert client.evaluate("1+1") == 2  # the same kernel, or its replacement, answers


def test_persistent_kernel_is_taken_back_by_id(pool: KernelService) -> None:
    first = linkserver.Client(pool.name, persistent=True)
    first.evaluate("kept = 99")
    kernel_id = first.kernel_id
    assert kernel_id
    first.close()
    assert pool.broker.statistics().parked == 1  # type: ignore[union-attr]
    # Later, from another connection (another process or machine would do the same):
    with linkserver.Client(pool.name, kernel=kernel_id) as again:
        assert again.kernel_id == kernel_id
        assert again.evaluate("kept") == 99
    # That connection did not ask to persist: the kernel is gone now.
    with pytest.raises(linkserver.LinkError, match="no kernel"):
        linkserver.Client(pool.name, kernel=kernel_id)
    assert pool.broker.statistics().parked == 0  # type: ignore[union-attr]


def test_pool_refuses_clearly_past_its_maximum(pool: KernelService) -> None:
    with linkserver.Client(pool.name) as a, linkserver.Client(pool.name) as b:
        assert a.evaluate("1") == 1 and b.evaluate("2") == 2
        third = linkserver.connect(pool.name)
        third.put(wl.EvaluatePacket(1))
        with pytest.raises(linkserver.LinkClosed, match="kernels of this pool are in use"):
            third.get(KERNEL_TIMEOUT)
        third.close()
    with linkserver.Client(pool.name) as d:  # room again once a and b left
        assert d.evaluate("3") == 3


_ESCAPES = re.compile(
    r"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


class Terminal:
    """A program on a pseudo-terminal, driven as a person at a keyboard would."""

    def __init__(self, *args: str, term: str = "dumb", env: dict[str, str] | None = None,
                 size: tuple[int, int] = (40, 160)) -> None:
        import os
        import pty
        import struct
        import subprocess
        import sys

        import fcntl
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        home = os.environ.get("TMPDIR", "/tmp")
        env = {**os.environ, "HOME": home, "TERM": term,
               "LINKSERVER_HISTORY": os.path.join(home, "linkserver-test-history.sqlite"),
               **(env or {})}

        def controlling_terminal() -> None:
            # A session of its own with the pty as its terminal, so Ctrl-C
            # typed there becomes SIGINT for the program, as in a real terminal.
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "linkserver", *args], stdin=slave, stdout=slave,
            stderr=slave, env=env, close_fds=True, preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.fd = master
        self.term = term
        self.raw = b""
        self.seen = ""
        self.pos = 0  # expect() looks only at what appeared after its last match

    def type(self, keys: str) -> None:
        import os

        os.write(self.fd, keys.encode())

    def expect(self, text: str, timeout: float = KERNEL_TIMEOUT) -> str:
        """Read the screen until ``text`` appears after the last match; return the screen."""
        import os
        import select
        import time

        deadline = time.monotonic() + timeout
        while text not in self.seen[self.pos :]:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never appeared; screen:\n{self.seen}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.raw += chunk
                for _ in range(chunk.count(b"\x1b[6n")):
                    # A cursor position request: answered as a terminal would (top left).
                    os.write(self.fd, b"\x1b[1;1R")
                shown = self.raw.decode(errors="replace")
                if self.term != "dumb":
                    # What a person would read: escape sequences (colours, cursor moves) out.
                    shown = _ESCAPES.sub("", shown)
                self.seen = shown.replace("\r\n", "\n")
        found = self.seen.find(text, self.pos)
        assert found >= 0, self.seen
        self.pos = found + len(text)
        return self.seen

    def kill(self) -> None:
        """End the program if it still runs (after a failure), and reap it."""
        self.proc.kill()
        self.proc.wait(KERNEL_TIMEOUT)

    def close(self) -> int:
        import os

        try:
            code = self.proc.wait(KERNEL_TIMEOUT)
        finally:
            self.proc.kill()
            os.close(self.fd)
        return code


def test_terminal_session_as_a_person_uses_it(shared: KernelService, tmp_path: object) -> None:
    term = Terminal("connect", shared.name)
    try:
        # Type only at a prompt, as a person does (a tty drops type-ahead on Ctrl-C).
        term.expect(":= ")
        term.type("replY = 6*7\n")
        term.expect("= 42")
        term.expect(":= ")
        term.type("f[{1,\n")  # unfinished: the session waits for the rest
        term.type("2}]\n")
        term.expect("= f[{1, 2}]")
        term.expect(":= ")
        term.type('Input["how many? "] + 1\n')
        term.expect("how many? ")
        term.type("9\n")
        term.expect("= 10")
        term.expect(":= ")
        term.type('Print["lo" <> "op"]; While[True, 1]\n')
        term.expect("\nloop\n")  # the printed line, not the echo of the input
        term.type("\x03")  # Ctrl-C aborts the evaluation, not the session
        term.expect("$Aborted")
        term.expect(":= ")
        term.type("replY + 1\n")
        term.expect("= 43")
        term.expect(":= ")
        term.type("\x04")  # Ctrl-D leaves
        assert term.close() == 0
    finally:
        term.proc.kill()


def test_eval_command_exit_codes(shared: KernelService) -> None:
    import subprocess
    import sys

    def run(expr: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "linkserver", "eval", "--name", shared.name, expr],
            capture_output=True, text=True, timeout=KERNEL_TIMEOUT, stdin=subprocess.DEVNULL,
        )

    ok = run('Print["printed"]; 2^10')
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "printed\n1024\n"  # as wolframscript -code: no Out[n]= (test_script.py)
    bad = run("1/0")
    assert bad.returncode == 1
    assert "Power::infy" in bad.stderr
    status = subprocess.run(
        [sys.executable, "-m", "linkserver", "status", shared.name],
        capture_output=True, text=True, timeout=KERNEL_TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert status.returncode == 0 and "shared" in status.stdout
    # Each kernel on its own line with its pid; a local kernel names no node.
    (kernel,) = shared.launcher.handles()
    line = next(row for row in status.stdout.splitlines() if f" {kernel.id} " in row)
    assert line.split()[-4:] == ["default", kernel.id, "pid", str(kernel.pid)]
    refused = subprocess.run(
        [sys.executable, "-m", "linkserver", "eval", "--name", "1@127.0.0.1", "1"],
        capture_output=True, text=True, timeout=KERNEL_TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 3 and "connection refused" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_keep_running_false_stops_the_server_and_answers_everyone() -> None:
    import re
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--log-level", "error"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    ) as server:
        try:
            assert server.stdout is not None
            name = ""
            while not name:
                line = server.stdout.readline()
                assert line, "the server exited before listening"
                match = re.search(r"listening on (\S+)", line)
                name = match.group(1) if match else ""
            busy = linkserver.connect(name)
            busy.put(wl.EvaluatePacket(wlexpr('Print["working"]; Pause[1]; "done"')))
            assert busy.get(KERNEL_TIMEOUT) == wl.TextPacket("working")
            queued = linkserver.connect(name)
            queued.put(wl.EvaluatePacket(wl.Plus(1, 1)))  # waits behind busy's request
            queued.flush()
            with linkserver.connect(name) as admin:
                admin.put(wl.EnterTextPacket("$KeepRunning = False"))
                assert admin.get(KERNEL_TIMEOUT) == wl.ReturnTextPacket("False")
            assert server.wait(KERNEL_TIMEOUT) == 0
            # Every accepted request got exactly one answer: a result or a refusal.
            for link in (busy, queued):
                packets = []
                while True:
                    try:
                        packets.append(link.get(KERNEL_TIMEOUT))
                    except linkserver.LinkClosed:
                        break
                finals = [p for p in packets if p.head.name == "ReturnPacket"]  # type: ignore[attr-defined]
                assert len(finals) == 1, packets
                if finals[0] != wl.ReturnPacket("done") and finals[0] != wl.ReturnPacket(2):
                    assert wl.MessagePacket(wl.LinkServer, "shutdown") in packets
                link.close()
        finally:
            server.kill()


def test_init_code_runs_while_the_kernel_warms_not_when_a_client_binds(
    pool: KernelService,
) -> None:
    # The launcher hands out kernels whose start-up code has already run: a warm
    # kernel answers initValue before any worker, or client, has touched it.
    from linkserver.launcher import KernelLauncher

    launcher = pool.pools["iso"].launcher
    assert isinstance(launcher, KernelLauncher)

    async def fresh_kernel_value() -> object:
        handle = await launcher.launch()
        try:
            await handle.link.put(wl.EvaluatePacket(wlexpr("initValue")))
            return await handle.link.get(timeout=KERNEL_TIMEOUT)
        finally:
            handle.kill()

    assert get_portal().call(fresh_kernel_value(), timeout=KERNEL_TIMEOUT) == wl.ReturnPacket(7)
