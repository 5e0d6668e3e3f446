"""Run each atheris target in fuzz/ for a bounded time; it must exit cleanly.

This is how CI fuzzes: ``make test`` runs these. Each target runs as its own
process (libFuzzer owns the process) on its seed corpus, for
``LINKSERVER_FUZZ_SECONDS`` seconds (default 10); new inputs go to a
temporary folder, so the committed seeds stay as they are. A crash, an
exception other than the allowed ones, or a hang (``-timeout``) makes
libFuzzer exit non-zero and this test fail with the reproducer's path and
the fuzzer's last lines. ``make fuzz`` runs longer (fuzz/README.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (Linux x86_64, CPython 3.11)")

pytestmark = pytest.mark.slow

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
SECONDS = int(os.environ.get("LINKSERVER_FUZZ_SECONDS", "10"))
PER_INPUT = 10  # seconds one input may take before libFuzzer calls it a hang


@pytest.mark.timeout(SECONDS * 3 + 60)
@pytest.mark.parametrize("target", ["wxf", "protocol"])
def test_fuzz_target_runs_clean(target: str, tmp_path: Path) -> None:
    work = tmp_path / "corpus"
    work.mkdir()
    args = [
        sys.executable, str(FUZZ / f"fuzz_{target}.py"), str(work), str(FUZZ / "corpus" / target),
        f"-max_total_time={SECONDS}", f"-timeout={PER_INPUT}", "-rss_limit_mb=2048",
        f"-artifact_prefix={tmp_path}/", "-print_final_stats=1",
    ]
    try:
        run = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=SECONDS * 3 + 30)
    except subprocess.TimeoutExpired as exc:  # libFuzzer did not stop by itself
        pytest.fail(f"the {target} fuzzer did not stop: {str(exc.stderr)[-2000:]}")
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert run.returncode == 0 and not crashes, (
        f"fuzz target {target} failed (exit {run.returncode}); reproducers: {crashes}\n"
        f"{run.stderr[-4000:]}"
    )
    assert "Done " in run.stderr  # it fuzzed, and stopped because the time was up
