"""Soak: N calls through two endpoints in one process; does ``used_size`` rise?

Run: ``python benchmarks/soak.py`` (100,000 calls, a few minutes), or shorter:
``python benchmarks/soak.py --calls 2000 --sample-every 50 --t1 0.05 --hold 0.5``.

Alice calls Bob at ``--rate`` calls per virtual second (virtual time: the run takes what the
CPU needs, not what the calls last), each held ``--hold`` seconds; every ``--probe-every`` calls
a misconfigured phone SUBSCRIBEs with ``Proxy-Require: sip.example.com`` (kamailio GH #1990).
Bob answers those with ``--handler``:

* ``ok``     200 without looking (the default),
* ``fixed``  the tutorial's Kamailio-style Proxy-Require check, freeing on every path: 420,
* ``leaky``  the same check as Kamailio had it before the fix: 420, and the parsed list leaks.

Every ``--sample-every`` calls the pool factories' figures are sampled (Kamailio's ``pkg.stats``
per endpoint). The verdict is the least-squares slope test of ``invsess.testing.trend`` over the
steady state (after the warm-up, before the cool-down): rising when the slope of the total
``used_size`` is above both ``t(0.99) * standard error`` and ``--tolerance`` bytes per call.

Writes ``OUT/NAME.csv`` (one row per sample), ``OUT/NAME.png`` and ``OUT/NAME.svg`` (the graph an
operator would look at: used_size per endpoint against calls, the fitted line, the warm-up
shaded). Exits 1 when memory rose or anything leaked (so ``--handler leaky`` exits 1: that is
the point), 0 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

from invsess.logs import configure
from invsess.testing.soak import RequestHandler, SoakConfig, SoakResult, SoakSample, answer_ok, run_soak

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial" / "kamailio_sanity_leak.py"


def handler(name: str) -> RequestHandler:
    """The request handler ``--handler`` names (the tutorial's check, loaded from its file)."""
    if name == "ok":
        return answer_ok
    spec = importlib.util.spec_from_file_location("kamailio_sanity_leak", TUTORIAL)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {TUTORIAL}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check: RequestHandler = functools.partial(module.on_request, fixed=name == "fixed")
    return check


def write_csv(result: SoakResult, path: Path) -> None:
    """One row per sample, the columns of :class:`SoakSample`."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=list(result.samples[0].as_dict()) if result.samples else ["calls"]
        )
        writer.writeheader()
        for sample in result.samples:
            writer.writerow(sample.as_dict())


def draw(result: SoakResult, title: str, png: Path, svg: Path) -> None:
    """The graph: above, used_size per endpoint against calls (the whole run, from zero); below,
    how far the total moved from where the steady state began, with the fitted line — a flat
    run stays within a few KiB of zero, a leak climbs."""
    import matplotlib as mpl

    mpl.use("Agg")
    mpl.rcParams["svg.hashsalt"] = "invsess-soak"  # the same SVG for the same run
    import matplotlib.pyplot as plt

    samples = result.samples
    xs = [s.calls / 1000 for s in samples]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 6.4), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    top.plot(xs, [s.used_size / 1024 for s in samples], color="#1f4e79", linewidth=2, label="both endpoints")
    top.plot(
        xs, [s.callee_used / 1024 for s in samples], color="#c0504d", linewidth=1.2, label="Bob (callee)"
    )
    top.plot(
        xs, [s.caller_used / 1024 for s in samples], color="#9bbb59", linewidth=1.2, label="Alice (caller)"
    )
    top.set_ylabel("KiB used (pkg.stats used)")
    top.set_ylim(bottom=0)
    fit = result.fitted
    t = result.trend
    verdict = "RISING" if t.rising else "flat"
    for ax in (top, bottom):
        ax.axvspan(0, result.config.warmup_calls / 1000, color="#dddddd", alpha=0.6)
        if fit:
            ax.axvspan(fit[-1].calls / 1000, max(xs), color="#eeeeee", alpha=0.6)
        ax.grid(visible=True, alpha=0.3)
    if fit:
        base = fit[0].used_size
        moved = [(s.used_size - base) / 1024 for s in samples]
        bottom.plot(xs, moved, color="#1f4e79", linewidth=1.5, label="used_size - start of steady state")
        line = [(t.intercept + t.slope * s.calls - base) / 1024 for s in fit]
        bottom.plot(
            [s.calls / 1000 for s in fit], line, color="black", linestyle="--", linewidth=1,
            label=f"least squares: {t.slope:+.2f} B/call (se {t.stderr:.2f})",
        )  # fmt: skip
        steady = [(s.used_size - base) / 1024 for s in fit]
        span = max(16.0, *(abs(v) for v in steady)) * 1.15
        bottom.set_ylim(-span, span)
    bottom.axhline(0, color="#888888", linewidth=0.8)
    bottom.set_ylabel("KiB since steady state")
    bottom.set_xlabel("calls (thousands); shaded: warm-up and cool-down, not fitted")
    bottom.set_xlim(0, max(xs) if xs else 1)
    top.set_title(f"{title}: {verdict}", loc="left", fontsize=11)
    top.legend(loc="lower right", fontsize=8, frameon=False)
    bottom.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(png, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, report, write the files; exit status as the docstring says."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--sample-every", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="calls per virtual second")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each call is up")
    parser.add_argument("--probe-every", type=int, default=10, help="a bad SUBSCRIBE every N calls (0: none)")
    parser.add_argument("--handler", choices=("ok", "fixed", "leaky"), default="ok")
    parser.add_argument("--t1", type=float, default=0.5, help="RFC 3261 T1 (transactions linger 64*T1)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="bytes per call allowed anyway")
    parser.add_argument("--malloc-debug", action="store_true", help="run with MALLOC_DEBUG (slower)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("soak-out"), help="where the CSV and graphs go")
    parser.add_argument("--name", default=None, help="file name stem (default: soak-HANDLER)")
    parser.add_argument("--title", default=None, help="the graph's title")
    parser.add_argument("--no-graph", action="store_true", help="CSV only (no matplotlib needed)")
    args = parser.parse_args(argv)
    configure("error")
    try:
        config = SoakConfig(
            calls=args.calls,
            sample_every=args.sample_every,
            rate=args.rate,
            hold=args.hold,
            probe_every=args.probe_every,
            t1=args.t1,
            tolerance=args.tolerance,
            malloc_debug=args.malloc_debug,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    name = args.name or f"soak-{args.handler}"
    print(
        f"soak: {config.calls} calls at {config.rate:g}/s (virtual), hold {config.hold:g} s, "
        f"a bad SUBSCRIBE every {config.probe_every} calls, handler {args.handler}; "
        f"sampled every {config.sample_every}, warm-up {config.warmup_calls} calls"
    )

    def progress(sample: SoakSample) -> None:
        if sample.calls % (config.sample_every * 10) == 0 or sample.calls == config.sample_every:
            print(
                f"  {sample.calls:>8} calls  {sample.elapsed:8.1f} s  used_size {sample.used_size:>10}  "
                f"Bob {sample.callee_used:>9}  Alice {sample.caller_used:>9}  pools {sample.pools:>6}",
                flush=True,
            )

    result = run_soak(config, request_handler=handler(args.handler), progress=progress)
    report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{name}.csv"
    write_csv(result, csv_path)
    print(f"csv: {csv_path}")
    if not args.no_graph:
        title = args.title or f"invsess soak, {config.calls:,} calls, handler {args.handler}"
        png, svg = args.out / f"{name}.png", args.out / f"{name}.svg"
        draw(result, title, png, svg)
        print(f"graphs: {png} {svg}")
    return 1 if result.leaked else 0


def report(result: SoakResult) -> None:
    """The figures of the run."""
    rate = result.config.calls / result.elapsed if result.elapsed else 0.0
    calls, failed = result.config.calls, result.failed_calls
    print(f"{calls} calls in {result.elapsed:.1f} s ({rate:.0f} calls/s of CPU), {failed} failed")
    answers = ", ".join(f"{code} x{n}" for code, n in result.probes_answered.items()) or "none"
    print(f"bad SUBSCRIBEs answered: {answers}")
    print(f"used_size: {result.trend.describe()}")
    if result.callee_growth:
        print("what stayed in Bob's memory after the warm-up, by allocation site:")
        for diff in list(result.callee_growth)[:5]:
            print(f"  {diff}")
    for who, leaks in (("Alice", result.caller_leaks), ("Bob", result.callee_leaks)):
        summary: Any = leaks.format().splitlines()
        head = f"{leaks.total_blocks} leaked blocks, {leaks.total_size} bytes" if leaks else summary[0]
        print(f"{who} at close: {head}")
        for line in summary[1:6]:
            print(line)


if __name__ == "__main__":
    sys.exit(main())
