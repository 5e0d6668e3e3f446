"""The package's shape: exports, layering, error tree."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import linkserver
import linkserver.aio
from linkserver import errors

SRC = Path(linkserver.__file__).parent


def test_exports_exist() -> None:
    for module in (linkserver, linkserver.aio, errors):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_public_api_of_the_issue() -> None:
    for name in ("connect", "listen", "loopback", "LinkServer", "Link", "LinkError"):
        assert name in linkserver.__all__
    for method in ("put", "get", "ready", "flush", "close", "abort", "interrupt", "terminate",
                   "put_function", "put_string", "put_integer", "put_real", "put_symbol",
                   "get_next", "get_function", "get_string", "get_integer", "get_real",
                   "get_symbol", "name"):
        assert hasattr(linkserver.Link, method), method
    for method in ("accept", "links", "on_link", "close", "port", "interface", "name",
                   "__enter__", "__exit__"):
        assert hasattr(linkserver.LinkServer, method), method


@pytest.mark.parametrize("package", ["protocol", "wxf"])
def test_pure_layers_import_no_io(package: str) -> None:
    # docs/design.md: the protocol core and the codec do no I/O and read no clock.
    forbidden = {"socket", "asyncio", "time", "random", "selectors", "threading"}
    for path in (SRC / package).glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert not forbidden & set(names), f"{path.name} imports {names}"


def test_every_error_is_a_link_error_with_code_and_message() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.LinkError)
        assert isinstance(cls.code, str) and cls.code
    err = errors.WXFDecodeError("bad", position=3)
    assert isinstance(err, ValueError) and "byte 3" in str(err)
    assert isinstance(errors.LinkTimeout("t"), TimeoutError)
    assert isinstance(errors.WXFEncodeError("t"), TypeError)


def _every_module() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(linkserver.__path__, "linkserver."):
        if info.name.rpartition(".")[2] != "__main__":  # running it would start a program
            names.append(info.name)
    return names


def test_the_error_tree_is_drawn_whole_in_errors() -> None:
    # Every LinkError subclass anywhere in the package is defined in errors.py,
    # exported there and named in its docstring's tree.
    for name in _every_module():
        importlib.import_module(name)
    found: set[type] = set()
    todo = [errors.LinkError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("linkserver.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    assert found, "the walk found no errors at all"
    drawing = (errors.__doc__ or "").split("The tree::", 1)[1].split("\n\n", 2)[1]
    for cls in found:
        assert cls.__module__ == "linkserver.errors", f"{cls.__qualname__} is defined in {cls.__module__}"
        assert cls.__name__ in errors.__all__, cls
        assert f" {cls.__name__} " in drawing, f"{cls.__name__} is not drawn in errors.py's tree"
    assert {getattr(errors, n) for n in errors.__all__} - {errors.LinkError} == found
