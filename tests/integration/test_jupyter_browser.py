"""A notebook in a real browser: JupyterLab, headless Chromium, the linkserver kernel.

JupyterLab runs with a temporary HOME and Jupyter folders, a token, on 127.0.0.1; the
browser is the system's Chromium (Debian's package, which ``make test`` installs where it
can), driven by Playwright with nothing downloaded at run time. The test opens a
notebook on the linkserver kernel, runs a cell and sees its ``Out``, runs a ``Plot`` and
sees the image, interrupts a long cell with JupyterLab's own command and finds the
definitions kept. Screenshots of each step are saved in the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("jupyterlab")
sync_api = pytest.importorskip("playwright.sync_api")

from linkserver.door.jupyter_install import install  # noqa: E402
from tests.procs import free_port, stop  # noqa: E402
from tests.timeouts import TIMEOUT  # noqa: E402

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
START = TIMEOUT * 6
CELL = TIMEOUT * 6

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (Debian's package chromium; "
    "make test installs it where it runs as root with apt-get)")

# Without these, Chromium tries Google's services at every start, and this machine's
# closed network refuses them many at a time.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

CELLS = [
    "browserX = 6*7",
    "Plot[Sin[t], {t, 0, 6}]",
    "Do[Null, {10^10}]",
    "browserX + 1",
]



@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """A shared linkserver and a JupyterLab with its kernel; yields the notebook's URL."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "run"),
               JUPYTER_PATH=str(tmp_path / "prefix" / "share" / "jupyter"),
               LINKSERVER_HISTORY=str(tmp_path / "history.sqlite"), PYTHONUNBUFFERED="1")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", str(port), "--mode", "shared",
         "--log-level", "warning"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    install("linkserver-browser", f"{port}@127.0.0.1", prefix=str(tmp_path / "prefix"),
            display_name="Wolfram Language (linkserver, browser test)")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "test.ipynb").write_text(json.dumps({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "linkserver-browser", "language": "Wolfram Language",
                                    "display_name": "linkserver"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": text,
                   "outputs": [], "execution_count": None} for i, text in enumerate(CELLS)],
    }))
    token, lab_port = secrets.token_hex(16), free_port()
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 (closed below)
    jupyter = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={lab_port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={notebooks}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        # Containers often run tests as root, which JupyterLab refuses without this.
        + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + START
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{lab_port}/api?token={token}",
                                       timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "jupyterlab.log").read_text()
                time.sleep(0.2)
        yield f"http://127.0.0.1:{lab_port}/lab/tree/test.ipynb?token={token}"
    finally:
        stop(jupyter)
        stop(server)
        log.close()


def _output(page: object, index: int) -> object:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(  # type: ignore[attr-defined]
        ".jp-OutputArea-output")


def test_a_notebook_in_a_real_browser(lab: str, tmp_path: Path) -> None:
    expect = sync_api.expect
    with sync_api.sync_playwright() as play:
        # Playwright gives the browser a fresh profile; HOME keeps the rest out of ours.
        browser = play.chromium.launch(executable_path=CHROMIUM, args=FLAGS,
                                       env=dict(os.environ, HOME=str(tmp_path / "home")))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(lab, timeout=START * 1000)
            cells = page.locator(".jp-Notebook .jp-Cell")
            expect(cells).to_have_count(len(CELLS), timeout=START * 1000)
            # The kernel is up once the toolbar says so.
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
                   ).to_have_count(1, timeout=START * 1000)

            def run(index: int) -> None:
                cells.nth(index).locator(".jp-InputArea-editor").click()
                page.keyboard.press("Shift+Enter")
                # The cell has run once its prompt shows a number; ask again if the key was lost.
                prompt = cells.nth(index).locator(".jp-InputPrompt")
                try:
                    expect(prompt).not_to_have_text(re.compile(r"\[\s*\]"), timeout=CELL * 500)
                except AssertionError:
                    cells.nth(index).locator(".jp-InputArea-editor").click()
                    page.keyboard.press("Shift+Enter")

            run(0)
            expect(_output(page, 0)).to_contain_text("42", timeout=CELL * 1000)
            page.screenshot(path=str(tmp_path / "1-out.png"))

            run(1)
            image = _output(page, 1).locator("img, svg").first
            expect(image).to_be_visible(timeout=CELL * 1000)
            box = image.bounding_box()
            assert box is not None and box["width"] > 50 and box["height"] > 50
            page.screenshot(path=str(tmp_path / "2-plot.png"))

            run(2)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']")
                   ).to_have_count(1, timeout=CELL * 1000)
            page.screenshot(path=str(tmp_path / "3-running.png"))
            # JupyterLab's own interrupt command: in command mode, I twice.
            page.keyboard.press("Escape")
            page.keyboard.press("i")
            page.keyboard.press("i")
            expect(_output(page, 2)).to_contain_text("$Aborted", timeout=CELL * 1000)
            page.screenshot(path=str(tmp_path / "4-interrupted.png"))

            run(3)
            expect(_output(page, 3)).to_contain_text("43", timeout=CELL * 1000)
            page.screenshot(path=str(tmp_path / "5-kept.png"))
            text = _output(page, 0).inner_text()
            assert re.search(r"\b42\b", text)
        finally:
            browser.close()
