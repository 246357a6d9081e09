"""Screening benchmark (issue 6).

1. 1,000 synthetic 384-well plates: normalisation + robust z + B-score + plate QC vectorised over a
   (1000, 16, 24) array vs a naive per-plate pandas loop doing the same maths.
2. The whole run of 1,000 plate files (parse the reader exports + process + write Parquet) through
   the workflow's step functions, in-process (and, unless quick, through Snakemake as well).
3. Bounded 4PL fits per second, batched across compounds, vs ``scipy.optimize.curve_fit`` one
   curve at a time with the same bounds and start, and the EC50 accuracy of both on synthetic
   curves with known parameters.

``python benchmarks/run.py screening`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.modalities.screening import dose, stats
from pipelines.modalities.screening.plates import ROW_LETTERS

ROWS, COLS = 16, 24


def _plates(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1000, 50, (n, ROWS, COLS))
    x *= 1 + 0.05 * np.linspace(-1, 1, COLS)  # a column gradient for the B-score to remove
    neg = np.zeros((n, ROWS, COLS), dtype=bool)
    pos = np.zeros_like(neg)
    neg[:, :, 0] = True
    pos[:, :, 1] = True
    x[pos] = rng.normal(100, 10, pos.sum())
    sample = ~(neg | pos)
    return x, sample, neg, pos


def vectorised(x, sample, neg, pos) -> dict[str, np.ndarray]:
    """What score_screen computes per plate (minus the bookkeeping)."""
    norm, _ = stats.normalise(x, method="median", sample=sample, negative=neg, positive=pos)
    return {
        "normalised": norm,
        "robust_z": stats.robust_z(x, sample=sample),
        "b_score": stats.b_score(x, sample=sample),
        **stats.plate_qc(x, negative=neg, positive=pos),
    }


def naive_pandas(x, sample, neg, pos) -> dict[str, list]:
    """The baseline: one pandas DataFrame per plate, the same maths written the obvious way."""
    out: dict[str, list] = {"normalised": [], "robust_z": [], "b_score": [], "z_prime": []}
    rr, cc = np.indices((ROWS, COLS))
    for p in range(x.shape[0]):
        df = pd.DataFrame(
            {
                "row": rr.ravel(),
                "col": cc.ravel(),
                "x": x[p].ravel(),
                "sample": sample[p].ravel(),
                "neg": neg[p].ravel(),
                "pos": pos[p].ravel(),
            }
        )
        s = df.loc[df["sample"], "x"]
        med = s.median()
        mad = 1.4826 * (s - med).abs().median()
        out["normalised"].append((df["x"] / med).to_numpy())
        out["robust_z"].append(((df["x"] - med) / mad).to_numpy())
        z = df["x"].where(df["sample"])
        overall, row_eff, col_eff = (
            0.0,
            pd.Series(0.0, index=range(ROWS)),
            pd.Series(0.0, index=range(COLS)),
        )
        old = 0.0
        for _ in range(10):
            rdelta = z.groupby(df["row"]).median().fillna(0)
            z = z - df["row"].map(rdelta)
            row_eff += rdelta
            delta = col_eff.median()
            col_eff -= delta
            overall += delta
            cdelta = z.groupby(df["col"]).median().fillna(0)
            z = z - df["col"].map(cdelta)
            col_eff += cdelta
            delta = row_eff.median()
            row_eff -= delta
            overall += delta
            new = z.abs().sum()
            if new == 0 or abs(new - old) < 0.01 * new:
                break
            old = new
        resid = df["x"] - overall - df["row"].map(row_eff) - df["col"].map(col_eff)
        rs = resid[df["sample"]]
        out["b_score"].append((resid / (1.4826 * (rs - rs.median()).abs().median())).to_numpy())
        n, q = df.loc[df["neg"], "x"], df.loc[df["pos"], "x"]
        out["z_prime"].append(1 - 3 * (n.std() + q.std()) / abs(n.mean() - q.mean()))
    return out


def _write_screen(folder: Path, x: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    header = "," + ",".join(str(c) for c in range(1, COLS + 1))
    names = []
    for p in range(x.shape[0]):
        body = "\r\n".join(
            f"{ROW_LETTERS[r]}," + ",".join(f"{v:.0f}" for v in x[p, r]) for r in range(ROWS)
        )
        name = f"plate{p + 1:04d}.csv"
        (folder / name).write_text("Reader export\r\n" + header + "\r\n" + body + "\r\n")
        names.append(name)
    (folder / "Platelist.txt").write_text(
        "Filename\tPlate\tReplicate\n" + "".join(f"{n}\t{i + 1}\t1\n" for i, n in enumerate(names))
    )
    (folder / "Plateconf.txt").write_text(
        f"Wells: 384\nPlates: {x.shape[0]}\nPlate\tWell\tContent\n*\t*\tsample\n"
        "*\t[A-P]01\tneg\n*\t[A-P]02\tpos\n"
    )
    return folder


def whole_run_in_process(run: Path, out: Path) -> float:
    from pipelines.modalities import screening

    t0 = time.perf_counter()
    raws = [
        screening.read_batch(run_dir=run, block={}, batch=b, out=out / f"raw{b}.parquet")
        for b in range(screening.batch_count(run, {}))
    ]
    screening.write_screen(
        screening.process_screen(run_dir=run, block={}, raw=raws),
        wells_out=out / "wells.parquet",
        plates_out=out / "plates.parquet",
        hits_out=out / "hits.parquet",
        dose_response_out=out / "dose_response.parquet",
        facts_out=out / "facts.json",
    )
    return time.perf_counter() - t0


def whole_run_snakemake(run: Path, work: Path) -> float:
    from pipelines.run.workflow import run_workflow
    from pipelines.toolkit.stage import StagedDataset

    stage = StagedDataset(work / "stage")
    stage.meta_dir.mkdir(parents=True, exist_ok=True)
    (stage.meta_dir / "experiment.json").write_text(json.dumps({"modality": "screening"}))
    t0 = time.perf_counter()
    run_workflow(run_dir=run, stage=stage, modality="screening", cores=2)
    return time.perf_counter() - t0


def _curves(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = np.stack(
        [
            rng.uniform(90, 110, n),
            rng.uniform(-10, 10, n),
            rng.uniform(-2.0, 0.5, n),
            rng.uniform(0.6, 3.0, n),
        ],
        axis=1,
    )
    lx = np.tile(np.log10(np.geomspace(0.001, 30, 10)), (n, 1))
    y = dose.logistic4(lx, *(true[:, i : i + 1] for i in range(4))) + rng.normal(0, 5, lx.shape)
    return lx, y, true


def main(quick: bool = False) -> list[dict]:
    from scipy.optimize import curve_fit

    n_plates = 100 if quick else 1000
    rows: list[dict] = []
    x, sample, neg, pos = _plates(n_plates)
    vectorised(x[:2], sample[:2], neg[:2], pos[:2])  # warm-up: first-call imports, not maths
    t0 = time.perf_counter()
    ours = vectorised(x, sample, neg, pos)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = naive_pandas(x, sample, neg, pos)
    t_naive = time.perf_counter() - t0
    same = (
        np.allclose(np.stack(ref["b_score"]).reshape(x.shape), ours["b_score"], equal_nan=True)
        and np.allclose(
            np.stack(ref["robust_z"]).reshape(x.shape), ours["robust_z"], equal_nan=True
        )
        and np.allclose(ref["z_prime"], ours["z_prime"])
    )
    rows.append(
        {
            "benchmark": f"screening: normalise+QC+B-score {n_plates} plates",
            "ours": t_vec,
            "baseline": "naive per-plate pandas loop",
            "baseline_s": t_naive,
            "ratio": t_naive / t_vec,
            "goal": "<= 0.5 s for 1,000 plates",
            "extra": {"identical_results": same},
        }
    )
    with tempfile.TemporaryDirectory(prefix="bench-screening-") as tmp:
        run = _write_screen(Path(tmp) / "run", x)
        t_whole = whole_run_in_process(run, Path(tmp) / "out")
        extra = {"plate_files": n_plates}
        if not quick:
            extra["snakemake_run_s"] = round(whole_run_snakemake(run, Path(tmp) / "smk"), 2)
        rows.append(
            {
                "benchmark": f"screening: whole run {n_plates} plate files",
                "ours": t_whole,
                "baseline": "goal",
                "baseline_s": 10.0,
                "ratio": 10.0 / t_whole,
                "goal": "<= 10 s for 1,000 files (parse+process+write)",
                "extra": extra,
            }
        )
    n_curves = 500 if quick else 5000
    lx, y, true = _curves(n_curves)
    w = np.ones_like(y)
    t0 = time.perf_counter()
    fits = dose.fit_4pl(lx, y, w)
    t_batch = time.perf_counter() - t0
    lo, hi = dose.bounds_for(lx, y, w, hill_min=0.1, hill_max=10.0)
    p0 = np.clip(dose.initial_guess(lx, y, w), lo, hi)
    n_ref = 100 if quick else 500
    ref_ec50 = np.full(n_ref, np.nan)
    t0 = time.perf_counter()
    for i in range(n_ref):
        try:
            ref_ec50[i] = curve_fit(dose.logistic4, lx[i], y[i], p0=p0[i], bounds=(lo[i], hi[i]))[
                0
            ][2]
        except RuntimeError:
            pass
    t_ref = time.perf_counter() - t0
    ours_rate, ref_rate = n_curves / t_batch, n_ref / t_ref
    err_ours = float(np.median(np.abs(fits.log10_ec50[:n_ref] - true[:n_ref, 2])))
    err_ref = float(np.nanmedian(np.abs(ref_ec50 - true[:n_ref, 2])))
    rows.append(
        {
            "benchmark": f"screening: bounded 4PL fits ({n_curves} curves)",
            "ours": t_batch,
            "baseline": "curve_fit one at a time (same n)",
            "baseline_s": n_curves / ref_rate,
            "ratio": ours_rate / ref_rate,
            "goal": ">= 2,000 fits/s, EC50 error = curve_fit's",
            "extra": {
                "fits_per_s": round(ours_rate),
                "curve_fit_per_s": round(ref_rate),
                "median_abs_log10_ec50_err": round(err_ours, 4),
                "curve_fit_median_abs_log10_ec50_err": round(err_ref, 4),
                "max_ec50_diff_vs_curve_fit_decades": round(
                    float(np.nanmax(np.abs(fits.log10_ec50[:n_ref] - ref_ec50))), 6
                ),
                "fit_ok_fraction": round(float(fits.ok.mean()), 3),
            },
        }
    )
    return rows


if __name__ == "__main__":
    for row in main(quick=True):
        print(row)
