"""``linkserver eval``: Wolfram Language run as a script, the way ``wolframscript`` runs it.

``linkserver eval '1+1'`` writes ``2`` and nothing else on stdout, so that
``x=$(linkserver eval '1+1')`` works: ``Print`` output comes first, in order,
then the result; messages go to stderr. As with ``wolframscript -code``, the
result is that of the last statement, in InputForm, and a string result is
written as its characters (``StringReverse["hello"]`` writes ``olleh``).
``linkserver eval -f FILE`` runs a file as ``wolframscript -file`` does: every
statement is evaluated and only ``Print`` output is written, unless
``--print`` asks for the last result (``--print all``: every statement's).

The code travels as one ``EnterTextPacket``, so the kernel splits it into
statements as a notebook does (a statement ends at a line's end where it is
complete), numbers them ``In[n]``, stops at a syntax error, and formats each
result in OutputForm. Any other form is made by the kernel too, in one more
request for the results to write (``ToString[Out[n], TeXForm]`` and the like);
JSON is written here from the result's expression, because Mathics3 has no JSON
exporter. :class:`Script` does one run; the CLI parses the options.
"""

from __future__ import annotations

import decimal
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from . import gather
from .link import Link
from .protocol.packets import EnterTextPacket, EvaluatePacket, short_head
from .repl import AbortOnInterrupt
from .wxf.digits import digits_of

__all__ = ["FORMATS", "PRINTS", "Script", "json_text"]

#: The ``--format`` choices; the first is the default.
FORMATS = ("InputForm", "OutputForm", "FullForm", "TeXForm", "JSON")

#: The ``--print`` choices: which results are written.
PRINTS = ("none", "last", "all")

EXIT_OK = 0
EXIT_FAILED = 1  # a message was issued or a result is $Failed or $Aborted (README)


@dataclass
class Script:
    """One run of Wolfram Language code: results on ``out``, messages on ``err``.

    Args:
        link: a link to a linkserver.
        format: one of :data:`FORMATS`.
        results: one of :data:`PRINTS`.
        out: where ``Print`` output and results go.
        err: where messages and prompts go.
        ask: reads a line for ``Input[]``; raises ``EOFError`` at end of input.
    """

    link: Link
    format: str = FORMATS[0]
    results: str = "last"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    ask: Callable[[str], str] | None = None
    # stdout kept back while a result waits for its form (--print-all)
    _held: list[gather.Printed | gather.Result] | None = None
    _failed: bool = False

    def run(self, code: str, *, on_interrupt: Callable[[], None] | None = None) -> int:
        """Evaluate ``code`` and write what it printed and its results; return the exit code.

        Ctrl-C while the kernel works aborts the evaluation (its result is ``$Aborted``).
        """
        self._held, self._failed = None, False
        request = EnterTextPacket(code)
        self.link.put(request.to_expr())
        with AbortOnInterrupt(self.link, on_interrupt) as ctrl_c:
            outcome = gather.read_answer(
                gather.Gatherer.for_request(request), ctrl_c.get, self.link.put,
                on_event=self._event, on_input=ctrl_c.asking(self._input))
            # "all": results were written in place, or held with what followed them.
            items = (self._held or []) if self.results == "all" else self._chosen(outcome)
            self._held = None
            texts = self._texts([item for item in items if isinstance(item, gather.Result)],
                                ctrl_c.get)
        for item in items:
            text = item.text if isinstance(item, gather.Printed) else texts.get(id(item))
            if text is not None:
                self._write(text)
        return EXIT_FAILED if outcome.failed or self._failed else EXIT_OK

    # -- while the answer comes

    def _event(self, event: gather.Event) -> None:
        if isinstance(event, gather.Printed):
            if self._held is not None:
                self._held.append(event)
            else:
                self._write(event.text)
        elif isinstance(event, gather.Issued):
            self._error(event.message.text)
        elif isinstance(event, gather.BadSyntax):
            for message in event.messages:
                self._error(message.text)
        elif isinstance(event, gather.Result) and self.results == "all":
            # Every result is written in its place; one that waits for the kernel
            # to format it holds back what follows, so that the order stays.
            if self._held is None and self._needs_kernel(event):
                self._held = []
            if self._held is not None:
                self._held.append(event)
            else:
                text = self._text_as_sent(event)
                if text is not None:
                    self._write(text)

    def _input(self, event: gather.InputRequest) -> str:
        self.err.write(event.prompt)
        self.err.flush()
        try:
            line = self.ask(event.prompt) if self.ask is not None else sys.stdin.readline()
        except EOFError:
            return gather.DEFAULT_INPUT
        if self.ask is None and not line:  # end of input
            return gather.DEFAULT_INPUT
        return line.rstrip("\n")

    # -- after it

    def _chosen(self, outcome: gather.Outcome) -> list[gather.Printed | gather.Result]:
        """The results to write at the end: none, or the last statement's."""
        if self.results == "none" or outcome.syntax is not None or not outcome.results:
            return []  # nothing asked, the last statement did not parse, or nothing came
        last = outcome.results[-1]
        # Null gives no result: the last one counts only if it is the last line's.
        if last.line is not None and outcome.line is not None and last.line != outcome.line:
            return []
        return [last]

    def _needs_kernel(self, result: gather.Result) -> bool:
        """True if the kernel must format this result (or send its value, for JSON)."""
        if result.line is None:  # a failure answer: there is no Out[n] to ask for
            return False
        if self.format == "JSON":
            return True
        # OutputForm is what the kernel sent; an explicit //TeXForm in the input wins.
        return self.format != "OutputForm" and not result.form and result.text != "$Aborted"

    def _text_as_sent(self, result: gather.Result) -> str | None:
        """The kernel's own text of a result the kernel need not format; None for JSON."""
        if self.format != "JSON":
            return result.text
        self._error(f"linkserver: no JSON form: the result is {result.text}")
        self._failed = True
        return None

    def _texts(self, results: list[gather.Result], get: Callable[[], Any]) -> dict[int, str | None]:
        """Each result's text in the chosen format, by ``id``; None where there is none."""
        wanted = [r for r in results if self._needs_kernel(r)]
        asked = {id(r) for r in wanted}
        texts = {id(r): self._text_as_sent(r) for r in results if id(r) not in asked}
        answers = self._ask_kernel([r.line for r in wanted if r.line is not None], get) \
            if wanted else []
        forgotten = False
        for result, answer in zip(wanted, answers):
            if isinstance(answer, WLSymbol) and answer == _FORGOTTEN:
                forgotten = True
                if self.format != "JSON":
                    texts[id(result)] = result.text  # what the kernel sent: OutputForm
                    continue
                self._failed = True
            elif self.format != "JSON":
                texts[id(result)] = answer if isinstance(answer, str) else result.text
            else:
                try:
                    texts[id(result)] = json_text(answer)
                except ValueError as exc:
                    self._error(f"linkserver: {exc}")
                    self._failed = True
        if forgotten:
            self._error(f"linkserver: the kernel kept no Out[n] ($HistoryLength is too small), "
                        f"so it could not make the {self.format} of "
                        + ("a result" if self.format == "JSON" else "a result, written in "
                           "OutputForm instead"))
        return texts

    def _ask_kernel(self, lines: list[int], get: Callable[[], Any]) -> Sequence[Any]:
        """``Out[n]`` of each line, formatted by the kernel (or as is, for JSON)."""
        parts = [_formatted(n, self.format) for n in lines]
        self.link.put(EvaluatePacket(wl.Quiet(wl.List(*parts))).to_expr())
        outcome = gather.read_answer(gather.Gatherer(), get, self.link.put, on_event=self._message)
        answer = outcome.result
        if isinstance(answer, (tuple, list)) and len(answer) == len(lines):
            return answer
        self._error(f"linkserver: the kernel did not format the results: {answer}")
        self._failed = True
        return []

    def _message(self, event: gather.Event) -> None:
        if isinstance(event, gather.Issued):
            self._error(event.message.text)

    def _write(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _error(self, text: str) -> None:
        print(text, file=self.err, flush=True)


#: What the kernel answers for an ``Out[n]`` it no longer holds (``$HistoryLength``).
_FORGOTTEN = WLSymbol("linkserver`Private`forgotten")


def _formatted(line: int, form: str) -> Any:
    """What the kernel evaluates for the text of ``Out[line]`` in ``form`` (the value, for JSON).

    ``With[{r = Out[n]}, If[MatchQ[r, HoldPattern[Out[n]]], forgotten, ToString[r, form]]]``:
    an ``Out[n]`` past ``$HistoryLength`` stays unevaluated.
    """
    value = WLSymbol("linkserver`Private`r")
    text: Any = value if form == "JSON" else wl.ToString(value, WLSymbol(form))
    if form == "InputForm":  # a string result is written as its characters (wolframscript)
        text = wl.If(wl.StringQ(value), value, text)
    forgotten = wl.MatchQ(value, wl.HoldPattern(wl.Out(line)))
    return wl.With(wl.List(wl.Set(value, wl.Out(line))), wl.If(forgotten, _FORGOTTEN, text))


# ------------------------------------------------------------------ JSON


def json_text(value: Any) -> str:
    """``value`` (a decoded result) as JSON text, as the Wolfram Language's JSON export writes it.

    Lists are arrays; associations, and lists of rules with string keys, are
    objects; strings, integers of any size, reals, ``True``, ``False`` and
    ``Null`` are themselves.

    Raises:
        ValueError: ``value`` holds something with no JSON form (a symbol, a
            rational, ``x^2``...); the message names it.
    """
    parts: list[str] = []
    _json(value, parts)
    return "".join(parts)


def _json(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(digits_of(value).decode("ascii"))
    elif isinstance(value, float):
        out.append(repr(value))
    elif isinstance(value, decimal.Decimal) and value.is_finite():
        out.append(str(value))
    elif isinstance(value, Mapping):
        _json_object(list(value.items()), out)
    elif isinstance(value, (tuple, list)):
        rules = [_string_rule(item) for item in value]
        if value and all(rule is not None for rule in rules):
            _json_object(rules, out)  # type: ignore[arg-type]
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _json(item, out)
        out.append("]")
    elif hasattr(value, "tolist") and hasattr(value, "dtype"):  # a packed or numeric array
        _json(value.tolist(), out)
    else:
        raise ValueError(f"no JSON form: {_describe(value)} is not a string, number, list, "
                         "association, True, False or Null; export N[...] or ToString[...] "
                         "of it instead")


def _json_object(items: list[tuple[Any, Any]], out: list[str]) -> None:
    out.append("{")
    for i, (key, item) in enumerate(items):
        if not isinstance(key, str):
            raise ValueError(f"no JSON form: the key {_describe(key)} is not a string")
        if i:
            out.append(",")
        out.append(json.dumps(key, ensure_ascii=False))
        out.append(":")
        _json(item, out)
    out.append("}")


def _string_rule(item: Any) -> tuple[str, Any] | None:
    if (isinstance(item, WLFunction) and short_head(item) in ("Rule", "RuleDelayed")
            and len(item.args) == 2 and isinstance(item.args[0], str)):
        return item.args[0], item.args[1]
    return None


def _describe(value: Any) -> str:
    if isinstance(value, WLSymbol):
        return f"the symbol {value.name}"
    if isinstance(value, WLFunction):
        head = short_head(value)
        return f"a {head}[...] expression" if head else "an expression"
    if isinstance(value, (int, float, decimal.Decimal)):
        return f"the number {value}"
    return f"a Python {type(value).__name__}"
