"""Timing, interleaving, medians, progress, the summary table, JSON and the ratio chart.

A :class:`Bench` is one row of the summary: a metric measured for several contenders
("xpgrad", "numpy" — the hand-written reference, CuPy on CUDA — and "torch"). The runner warms
every contender up, then takes samples interleaved (A B C, B C A, C A B, ...) so that drifting
machine load hits all contenders alike, and reports the median sample.
"""
from __future__ import annotations

import gc
import json
import math
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["Contender", "Bench", "Result", "run_bench", "run_all", "format_table", "write_json", "plot_ratios"]

CONTENDERS = ("xpgrad", "numpy", "torch")
REFERENCE = "numpy"


def _noop() -> None:
    return None


@dataclass
class Contender:
    """One implementation of a Bench. ``run`` does one unit of work.

    For a "time" bench the runner times ``run``; for a "value" bench ``run`` returns the figure
    itself (bytes, seconds to an accuracy, ...), or None when it could not be measured.
    """

    name: str
    run: Callable[[], Any]
    sync: Callable[[], None] = _noop
    label: str = ""                 # shown in notes, e.g. "cupy" for the reference on CUDA


@dataclass
class Bench:
    """One summary row.

    ``scale`` turns a raw sample (seconds per call, or the value ``run`` returned) into the
    reported metric: e.g. 1e6 / 200 for microseconds per op when one call runs 200 ops.
    Lower is better for every metric, so ratios ``xpgrad / other`` above 1 mean xpgrad loses.
    """

    name: str
    metric: str
    scale: float
    contenders: list[Contender]
    kind: str = "time"              # "time" or "value"
    repeat: int = 20
    warmup: int = 3
    min_sample_s: float = 0.02      # calls per timed sample are chosen so a sample lasts about this long
    rate_unit: str | None = None    # e.g. "steps/s": also show 1 / (seconds per call)
    info: dict = field(default_factory=dict)


@dataclass
class Result:
    name: str
    metric: str
    kind: str
    samples: dict[str, list[float]]          # raw samples per contender (seconds per call, or values)
    calls_per_sample: dict[str, int]
    values: dict[str, float]                 # median sample * scale, in the metric's unit
    errors: dict[str, str]
    scale: float
    repeat: int
    warmup: int
    rate_unit: str | None
    info: dict

    def ratio(self, other: str) -> float | None:
        a, b = self.values.get("xpgrad"), self.values.get(other)
        if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b == 0:
            return None
        return a / b

    def to_json(self) -> dict:
        return {
            "name": self.name, "metric": self.metric, "kind": self.kind, "scale": self.scale,
            "repeat": self.repeat, "warmup": self.warmup, "rate_unit": self.rate_unit,
            "samples": _jsonable(self.samples), "calls_per_sample": self.calls_per_sample,
            "median": {k: _finite_or_none(v) for k, v in self.values.items()},
            "ratio_to_ref": self.ratio(REFERENCE), "ratio_to_torch": self.ratio("torch"),
            "errors": self.errors, "info": _jsonable(self.info),
        }


# -- progress -------------------------------------------------------------------------------------
class _Progress:
    """tqdm when installed (on stderr), one plain line per bench otherwise."""

    def __init__(self, name: str, total: int, enabled: bool, plain_every_sample: bool = False) -> None:
        self.name = name
        self.bar = None
        self.enabled = enabled
        self.plain_every_sample = plain_every_sample   # long samples (memory, digits) get a line each
        self.done, self.total = 0, total
        if not enabled:
            return
        tqdm = None
        if sys.stderr.isatty():  # a redirected log gets plain lines, not carriage-return redraws
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
        if tqdm is not None:
            self.bar = tqdm(total=total, desc=f"{name:<20}", unit="sample", leave=False, file=sys.stderr)
        else:
            print(f"running {name} ({total} samples) ...", file=sys.stderr, flush=True)

    def update(self, text: str = "") -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.enabled and self.plain_every_sample:
            print(f"  {self.name}: {self.done}/{self.total} {text}", file=sys.stderr, flush=True)

    def close(self, summary: str) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            print(f"{self.name:<20} {summary}", file=sys.stderr, flush=True)


# -- measuring -------------------------------------------------------------------------------------
def _time_calls(c: Contender, calls: int) -> float:
    """Seconds per call over ``calls`` back-to-back calls, device work included."""
    run, sync = c.run, c.sync
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        run()
    sync()
    return (time.perf_counter() - start) / calls


def _value(c: Contender) -> float:
    v = c.run()
    return math.nan if v is None else float(v)


def run_bench(bench: Bench, repeat: int | None = None, progress: bool = True) -> Result:
    """Warm up, calibrate, then take ``repeat`` interleaved samples of every contender."""
    repeat = bench.repeat if repeat is None else repeat
    contenders = list(bench.contenders)
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    calls: dict[str, int] = {c.name: 1 for c in contenders}
    errors: dict[str, str] = {}
    bar = _Progress(bench.name, (bench.warmup + repeat) * len(contenders), progress, bench.kind == "value")

    def guarded(c: Contender, fn: Callable[[], float]) -> float | None:
        if c.name in errors:
            return None
        try:
            return fn()
        except Exception as exc:  # one broken contender must not sink the others' figures
            errors[c.name] = f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc(limit=6)
            bench.info.setdefault("tracebacks", {})[c.name] = tb
            return None

    gc.collect()
    load_before = _loadavg()
    fastest: dict[str, float] = {}
    for _ in range(bench.warmup):
        for c in contenders:
            last = guarded(c, (lambda c=c: _time_calls(c, 1)) if bench.kind == "time" else (lambda c=c: _value(c)))
            if bench.kind == "time" and last is not None:
                # Calibrate: enough calls per sample to dwarf timer resolution and loop overhead.
                fastest[c.name] = min(last, fastest.get(c.name, math.inf))
                calls[c.name] = max(1, int(math.ceil(bench.min_sample_s / max(fastest[c.name], 1e-9))))
            bar.update(f"warm-up {c.name}")
    for rep in range(repeat):
        shift = rep % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            if bench.kind == "time":
                s = guarded(c, lambda c=c: _time_calls(c, calls[c.name]))
            else:
                s = guarded(c, lambda c=c: _value(c))
            if s is not None:
                samples[c.name].append(s)
            bar.update(f"{c.name} {_fmt(s * bench.scale) if s is not None else 'error'}")

    values = {}
    for c in contenders:
        if c.name in errors or not samples[c.name]:
            continue
        finite = [s for s in samples[c.name] if math.isfinite(s)]
        values[c.name] = statistics.median(finite) * bench.scale if finite else math.nan
    # other work on the machine skews every contender's figure: keep the evidence with the numbers
    bench.info["loadavg_1min"] = {"before": load_before, "after": _loadavg()}
    result = Result(bench.name, bench.metric, bench.kind, samples, calls, values, errors, bench.scale, repeat,
                    bench.warmup, bench.rate_unit, bench.info)
    bar.close(", ".join(f"{k} {_fmt(v)}" for k, v in values.items()) + "".join(f", {k} ERROR" for k in errors))
    return result


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_all(benches: Sequence[Bench], repeat: int | None = None, progress: bool = True) -> list[Result]:
    return [run_bench(b, repeat, progress) for b in benches]


# -- reporting ---------------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _cell(result: Result, name: str) -> str:
    if name in result.errors:
        return "error"
    v = result.values.get(name)
    if v is None:
        return "-"
    text = _fmt(v)
    if result.rate_unit and v and math.isfinite(v):
        # metric is time per step in ms; the rate is its inverse
        text += f" ({_fmt(1000.0 / v)}/s)"
    return text


def format_table(results: Sequence[Result]) -> str:
    """The summary: one row per bench, medians per contender and xpgrad's ratios (>1: xpgrad slower)."""
    header = ["workload", "metric", "xpgrad", "numpy-ref", "torch", "xpgrad/ref", "xpgrad/torch"]
    rows = [header]
    for r in results:
        rows.append([
            r.name, r.metric, _cell(r, "xpgrad"), _cell(r, "numpy"), _cell(r, "torch"),
            _fmt(r.ratio(REFERENCE)), _fmt(r.ratio("torch")),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if j < 2 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = []
    for r in results:
        for name, err in r.errors.items():
            notes.append(f"{r.name}/{name}: {err}")
        if r.info.get("note"):
            notes.append(f"{r.name}: {r.info['note']}")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def write_json(path: str, results: Sequence[Result], machine: dict, config: dict) -> None:
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": _jsonable(config),
        "machine": _jsonable(machine),
        "results": [r.to_json() for r in results],
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, allow_nan=False, default=str)
        f.write("\n")


def plot_ratios(path: str, results: Sequence[Result], title: str = "") -> str:
    """Bar chart of xpgrad / reference and xpgrad / torch per workload (log scale, 1 = parity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = [r.name for r in results]
    ref = [r.ratio(REFERENCE) for r in results]
    tor = [r.ratio("torch") for r in results]
    x = range(len(names))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.5))
    for offset, values, label in ((-width / 2, ref, "xpgrad / hand-written ref"), (width / 2, tor, "xpgrad / torch")):
        xs = [i + offset for i, v in zip(x, values) if v is not None]
        ys = [v for v in values if v is not None]
        # bars grow from parity (1.0), up when xpgrad loses, down when it wins
        bars = ax.bar(xs, [v - 1.0 for v in ys], width, bottom=1.0, label=label)
        for bar, v in zip(bars, ys):
            ax.annotate(f"{v:.2g}", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                        va="bottom" if v >= 1 else "top", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("ratio (lower is better for xpgrad)")
    ax.set_title(title or "xpgrad relative to the hand-written reference and PyTorch")
    ax.legend()
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _finite_or_none(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _jsonable(obj):
    """Plain JSON types only; NaN/inf become None so the file stays strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "item"):
        try:
            return _jsonable(obj.item())
        except (TypeError, ValueError):
            pass
    return str(obj)
