"""`make bench`: run every benchmarks/bench_*.py and print their ratios side by side.

Each bench module has ``main(quick: bool = False) -> list[dict]``; each dict is one comparison:
``{"benchmark": ..., "ours": seconds, "baseline": name, "baseline_s": seconds, "ratio": x,
"goal": "...", "extra": {...}}``.  ``python benchmarks/run.py [NAME ...] [--quick]``; NAME is the
module's name without ``bench_``: store, replicate (issue 26), cryoem, metabolomics, metabolomics_features (issue 14:
feature detection against ground truth and pyopenms), screening, transcriptomics.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "names", nargs="*", help="bench modules to run (e.g. store cryoem); default all"
    )
    ap.add_argument(
        "--quick", action="store_true", help="smaller inputs (a smoke run, not the figures)"
    )
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    mods = sorted(HERE.glob("bench_*.py"))
    if args.names:
        mods = [m for m in mods if m.stem.removeprefix("bench_") in args.names]
    rows: list[dict] = []
    for path in mods:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = mod
        spec.loader.exec_module(mod)
        print(f"== {path.stem}", flush=True)
        for row in mod.main(quick=args.quick):
            rows.append(row)
            _print_row(row)
    print("\nSummary")
    for row in rows:
        _print_row(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


def _print_row(row: dict) -> None:
    extra = " ".join(f"{k}={v}" for k, v in (row.get("extra") or {}).items())
    # rows scored against a ground truth (metabolomics_groundtruth) have no baseline timing
    if "baseline" not in row:
        print(
            f"  {row['benchmark']:<48} ours {row['ours']:8.3f} s | goal {row.get('goal', '')} {extra}"
        )
        return
    print(
        f"  {row['benchmark']:<48} ours {row['ours']:8.3f} s | {row['baseline']:<32} "
        f"{row['baseline_s']:8.3f} s | ratio {row['ratio']:6.2f}x | goal {row.get('goal', '')} {extra}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
