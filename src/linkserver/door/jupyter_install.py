"""``linkserver jupyter install``: the kernel spec that makes Jupyter offer linkserver.

The spec runs ``python -m linkserver.door.jupyter_kernel`` with the Python
that installed it, so the kernel finds this linkserver whatever environment
Jupyter itself runs in. ``--server`` fixes the address a notebook attaches to
(a pool too: ``31415@host/big``); without it each kernel attaches to
``$LINKSERVER_ADDRESS`` or the newest server the user runs. Interrupts are
asked for as messages (``interrupt_mode: message``): Jupyter's interrupt
button then aborts the running evaluation on the server.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_KERNEL_NAME", "DISPLAY_NAME", "add_command", "install", "kernel_spec", "run_command"]

DEFAULT_KERNEL_NAME = "linkserver"
DISPLAY_NAME = "Wolfram Language (linkserver)"


def kernel_spec(server: str | None = None, display_name: str = DISPLAY_NAME) -> dict[str, Any]:
    """The content of ``kernel.json`` for a kernel attached to ``server`` (None: the default)."""
    argv = [sys.executable, "-m", "linkserver.door.jupyter_kernel"]
    if server:
        argv += ["--server", server]
    argv += ["-f", "{connection_file}"]
    return {
        "argv": argv,
        "display_name": display_name,
        "language": "wolfram",
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }


def install(
    name: str = DEFAULT_KERNEL_NAME,
    server: str | None = None,
    *,
    user: bool = True,
    prefix: str | None = None,
    display_name: str = DISPLAY_NAME,
) -> Path:
    """Install the kernel spec; return the directory it was written to.

    Args:
        name: the kernel's name (``jupyter kernelspec list`` shows it; lower case).
        server: the linkserver address the kernel attaches to (None: the default).
        user: install for this user (``jupyter --data-dir``/kernels) when no ``prefix``.
        prefix: install into ``PREFIX/share/jupyter/kernels`` (e.g. ``sys.prefix`` for a
            virtual environment); overrides ``user``.
        display_name: the name notebooks show.

    Raises:
        ImportError: jupyter_client is not installed (the ``jupyter`` extra).
        ValueError: ``name`` is not a valid kernel name.
        OSError: the directory cannot be written (a system-wide install without rights).
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory(prefix="linkserver-kernelspec-") as tmp:
        source = Path(tmp) / name
        source.mkdir()
        (source / "kernel.json").write_text(
            json.dumps(kernel_spec(server, display_name), indent=1) + "\n", encoding="utf-8")
        where = KernelSpecManager().install_kernel_spec(
            str(source), name, user=user and prefix is None, prefix=prefix)
    return Path(where)


# ------------------------------------------------------------ the command line


def add_command(sub: Any) -> None:
    """Add ``jupyter install`` to the ``linkserver`` command's subparsers."""
    jupyter = sub.add_parser(
        "jupyter", help="Jupyter notebooks on a linkserver kernel",
        description="Manage the Jupyter kernel that forwards each cell to a linkserver "
        "(see docs/jupyter.md).",
    )
    actions = jupyter.add_subparsers(dest="jupyter_command", metavar="ACTION", required=True)
    inst = actions.add_parser(
        "install", help="install the kernel spec",
        description="Install a Jupyter kernel spec whose kernel forwards each cell to a "
        "linkserver: in shared mode every notebook sees the same definitions.",
    )
    inst.add_argument("--name", default=DEFAULT_KERNEL_NAME,
                      help="the kernel spec's name (default: %(default)s)")
    inst.add_argument("--server", default=None, metavar="PORT@HOST[/POOL]",
                      help="the server the kernel attaches to (default: $LINKSERVER_ADDRESS, "
                      "else the newest server you run, when the notebook starts)")
    inst.add_argument("--display-name", default=DISPLAY_NAME,
                      help="the name notebooks show (default: %(default)s)")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="install for this user (the default)")
    where.add_argument("--prefix", default=None, metavar="P",
                       help="install into P/share/jupyter/kernels (e.g. a virtual environment)")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"install into this Python's prefix ({sys.prefix})")


def run_command(args: Any) -> int:
    """Run ``linkserver jupyter ACTION``; return the exit code."""
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        path = install(args.name, args.server, user=prefix is None, prefix=prefix,
                       display_name=args.display_name)
    except ImportError:
        print("linkserver: the Jupyter kernel needs jupyter_client and pyzmq: "
              "pip install 'linkserver[jupyter]'", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"linkserver: cannot install the kernel spec: {exc}; try --user or --prefix",
              file=sys.stderr)
        return 3
    target = args.server or "the default server ($LINKSERVER_ADDRESS, else the newest you run)"
    print(f"installed kernel spec {args.name!r} in {path}")
    print(f"  notebooks choosing {args.display_name!r} evaluate on {target}")
    return 0
