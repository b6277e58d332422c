"""The soak harness and its slope test: a short run in CI (seconds); the long one is
``benchmarks/soak.py`` (100,000 calls) and ``--run-slow``."""

from __future__ import annotations

import csv
import functools
import importlib.util
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from invsess.testing.soak import SoakConfig, run_soak
from invsess.testing.trend import t_quantile, trend

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial" / "kamailio_sanity_leak.py"
#: Short: T1 of 50 ms, so finished calls' transactions go after 3.2 s and the steady state
#: comes after 235 calls.
SHORT = SoakConfig(calls=1000, sample_every=40, rate=50, hold=0.5, t1=0.05, probe_every=10)


def tutorial() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kamailio_sanity_leak", TUTORIAL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def line_of(text: str) -> int:
    lines = [n for n, line in enumerate(TUTORIAL.read_text().splitlines(), 1) if text in line]
    assert len(lines) == 1, lines
    return lines[0]


# -- the slope test -----------------------------------------------------------------------------


def test_t_quantiles() -> None:
    for confidence, dof, exact in (
        (0.99, 6, 3.1427),
        (0.99, 30, 2.4573),
        (0.95, 10, 1.8125),
        (0.999, 8, 4.5008),
    ):
        assert t_quantile(confidence, dof) == pytest.approx(exact, rel=2e-3)
    with pytest.raises(ValueError, match="confidence"):
        t_quantile(1.0, 5)
    with pytest.raises(ValueError, match="degree"):
        t_quantile(0.99, 0)


def test_noise_around_a_level_is_flat_and_a_small_climb_is_not() -> None:
    rng = random.Random(5)
    xs = [1000.0 * i for i in range(40)]
    flat = [5_000_000 + rng.gauss(0, 20_000) for _ in xs]
    verdict = trend(xs, flat, tolerance=0.5)
    assert not verdict.rising
    assert abs(verdict.slope) < verdict.threshold
    climbing = [y + 4.0 * x for x, y in zip(xs, flat, strict=True)]  # 4 bytes a call under the noise
    verdict = trend(xs, climbing, tolerance=0.5)
    assert verdict.rising and verdict.slope == pytest.approx(4.0, abs=1.0)
    assert "RISING" in verdict.describe()


def test_exactness_and_the_tolerance() -> None:
    xs = list(range(10))
    assert not trend(xs, [100.0] * 10).rising  # perfectly flat: slope 0, error 0
    tiny = [100.0 + 0.1 * x for x in xs]  # perfectly straight but tiny: real, below the tolerance
    assert trend(xs, tiny).rising
    assert not trend(xs, tiny, tolerance=0.5).rising
    assert trend(xs, tiny, tolerance=0.5).stderr == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("xs", "ys", "kwargs", "message"),
    [
        ([1, 2, 3], [1, 2, 3], {}, "at least 8"),
        ([1] * 9, list(range(9)), {}, "every x is the same"),
        (list(range(9)), list(range(8)), {}, "differ in length"),
        (list(range(9)), list(range(9)), {"tolerance": -1}, "negative"),
    ],
)
def test_refuses_what_it_cannot_test(
    xs: list[float], ys: list[float], kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        trend(xs, ys, **kwargs)


def test_a_soak_too_short_to_test_is_refused() -> None:
    with pytest.raises(ValueError, match="the slope test needs 8"):
        SoakConfig(calls=300, sample_every=50, t1=0.05, hold=0.5)
    with pytest.raises(ValueError, match="positive"):
        SoakConfig(rate=0)


# -- the short soak -----------------------------------------------------------------------------


def test_short_soak_with_the_fixed_check_is_flat() -> None:
    result = run_soak(SHORT, request_handler=functools.partial(tutorial().on_request, fixed=True))
    assert result.failed_calls == 0
    assert result.probes_answered == {420: 100}
    assert not result.trend.rising, result.trend.describe()
    assert not result.callee_growth and not result.callee_leaks and not result.caller_leaks
    assert not result.leaked
    fitted = result.fitted
    assert len(fitted) >= 8 and fitted[0].calls > SHORT.warmup_calls and fitted[-1].started < SHORT.calls
    assert len(result.samples) == SHORT.calls // SHORT.sample_every


def test_short_soak_with_the_leaky_check_rises_and_names_the_line() -> None:
    result = run_soak(SHORT, request_handler=functools.partial(tutorial().on_request, fixed=False))
    assert result.probes_answered == {420: 100}  # the answers are right all the same
    assert result.trend.rising, result.trend.describe()
    (leak,) = result.callee_leaks.entries
    per_call = leak.size / leak.count / SHORT.probe_every  # one list node every probe_every calls
    assert result.trend.slope == pytest.approx(per_call, rel=0.35)  # give or take the calls in flight
    top = result.callee_growth[0]
    site = top.site
    assert (Path(site.filename).name, site.lineno, site.function) == (
        "kamailio_sanity_leak.py",
        line_of("head = pool.alloc(StrList, tag, head)"),
        "parse_proxy_require",
    )
    assert top.type_name == "StrList" and top.count == 100
    assert result.callee_leaks.total_blocks == 100 and not result.caller_leaks
    assert result.leaked


def test_soak_script_writes_csv_and_graphs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--calls", "600", "--sample-every", "20",
         "--t1", "0.05", "--hold", "0.5", "--handler", "leaky", "--out", str(tmp_path), "--name", "short"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # it rose: the script says so by its status
    assert "RISING" in done.stdout
    assert "kamailio_sanity_leak.py" in done.stdout and "in parse_proxy_require" in done.stdout
    with (tmp_path / "short.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and rows[-1]["calls"] == "600"
    assert {"calls", "used_size", "real_used_size", "callee_used", "caller_used", "pools"} <= set(rows[0])
    assert (tmp_path / "short.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "short.svg").read_bytes()[:400]


@pytest.mark.slow
def test_long_soak_is_flat() -> None:
    """The benchmark's own figures in MALLOC_DEBUG (``--run-slow``): 20,000 calls."""
    config = SoakConfig(calls=20_000, sample_every=500, malloc_debug=True)
    result = run_soak(config, request_handler=functools.partial(tutorial().on_request, fixed=True))
    assert not result.leaked, result.trend.describe()
