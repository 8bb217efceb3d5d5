"""python -m xpgrad.benchmarks: time xpgrad against a hand-written NumPy/CuPy reference and PyTorch.

Examples::

    python -m xpgrad.benchmarks                               # everything, CPU, full size
    python -m xpgrad.benchmarks --only mlp_small lstm --repeat 30
    python -m xpgrad.benchmarks --device cuda --json bench.json --plot bench.png
    python -m xpgrad.benchmarks --size tiny --compare numpy   # quick smoke run, no torch
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .machine import describe, machine_info
from .runner import format_table, plot_ratios, run_bench, write_json
from .workloads import WORKLOADS, Config, build
from .workloads._common import configure_torch_threads, torch_or_none

KNOWN_CONTENDERS = ("numpy", "torch")


def _compare(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in KNOWN_CONTENDERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown contender(s) {unknown}; choose from {', '.join(KNOWN_CONTENDERS)}")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m xpgrad.benchmarks", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Workloads: " + ", ".join(WORKLOADS) + ". Ratios are xpgrad / other: "
                                            "above 1 means xpgrad is slower (or uses more memory).")
    parser.add_argument("--device", default="cpu", help="cpu (NumPy reference) or cuda[:i] (CuPy reference)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=WORKLOADS, help="run only these workloads")
    parser.add_argument("--compare", type=_compare, default=KNOWN_CONTENDERS, metavar="LIST",
                        help="contenders besides xpgrad, comma-separated (default: numpy,torch; 'none' for xpgrad alone)")
    parser.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="samples per contender (default: 20; memory 1, digits 3)")
    parser.add_argument("--size", choices=("tiny", "full"), default="full", help="problem sizes (tiny: smoke test)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="limit NumPy's BLAS (and so torch) to N threads (needs threadpoolctl); default: as installed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write every raw sample and the machine info here")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of the ratios here (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def _limit_threads(n: int):
    """Cap every BLAS/OpenMP pool of this process at ``n`` threads; subprocesses inherit the cap."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise SystemExit("--threads needs threadpoolctl (pip install threadpoolctl)") from None
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)          # for the memory subprocesses
    return threadpool_limits(limits=n)


def main(argv=None) -> int:
    args = parse_args(argv)
    limits = _limit_threads(args.threads) if args.threads is not None else None
    if "torch" in args.compare and torch_or_none() is None:
        print("torch is not installed: comparing without it", file=sys.stderr)
    if "torch" in args.compare:
        configure_torch_threads()
    cfg = Config(device=args.device, size=args.size, compare=tuple(args.compare), repeat=args.repeat, seed=args.seed)
    machine = machine_info(args.device)
    print(describe(machine), file=sys.stderr, flush=True)

    started = time.perf_counter()
    results = []
    for name in args.only or WORKLOADS:
        try:
            benches = build(name, cfg)
        except Exception as exc:  # a workload that cannot be set up is reported, the rest still run
            print(f"{name}: could not be set up: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            continue
        for bench in benches:
            results.append(run_bench(bench, progress=not args.quiet))
        del benches
    elapsed = time.perf_counter() - started

    print()
    print(f"xpgrad benchmarks ({args.size}, {args.device}) on {describe(machine)}")
    print(format_table(results))
    print(f"\nmedians over interleaved samples; took {elapsed:.0f} s")
    if args.json:
        config = {**vars(args), "compare": list(args.compare), "elapsed_s": elapsed}
        write_json(args.json, results, machine, config)
        print(f"wrote {args.json}")
    if args.plot:
        try:
            print(f"wrote {plot_ratios(args.plot, results, f'xpgrad ({args.size}, {args.device})')}")
        except ImportError:
            print("--plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
    if limits is not None:
        limits.restore_original_limits()
    failed = any(r.errors for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
