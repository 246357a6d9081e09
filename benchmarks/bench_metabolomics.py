"""Metabolomics: mzML -> Parquet throughput against pymzml and pyopenms, and peak memory.

Each tool runs as its own process (``python -c ...``) and is timed whole, imports included, as
in issue 4's baselines:

- **ours**: :func:`pipelines.modalities.metabolomics.convert.convert_mzml` (spectra + chromatogram
  Parquet written, ``threads=2``: two decoding processes for the real-like spectra, two decoding
  threads for the large ones, one process for the small real files);
- **pymzml**: iterate ``pymzml.run.Reader`` and decode every array (``spec.mz``, ``spec.i``);
- **pyopenms**: ``MzMLFile().load`` into an ``MSExperiment`` (C++, holds every peak in memory).

Inputs: the real files of ``../shared/data/metabolomics`` (all in one process per tool), and two
synthetic files of >= 400 MB written to a temporary folder and deleted afterwards:

- *real-like*: the spectra of the real DDA run 171103_PMA_TK_QC_04 (MS1 + MS2, zlib, 64-bit)
  repeated with fresh indices and ids;
- *large MS1*: profile-like MS1 spectra of 2k-20k peaks (zlib, 64-bit m/z, 32-bit intensity).

Peak RSS comes from ``os.wait4`` of each child.  Our RSS is also measured on a quarter-size file:
flat memory means the two are about equal.  ``python benchmarks/run.py metabolomics [--quick]``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BINDS_SHARED_DATA", REPO.parent / "shared" / "data")) / "metabolomics"
TEMPLATE = "171103_PMA_TK_QC_04-4to5min.mzML"

_OURS = """
import resource
import sys
from pathlib import Path
from pipelines.modalities.metabolomics.convert import convert_mzml
out = Path(sys.argv[1])
for i, f in enumerate(sys.argv[2:]):
    convert_mzml(src=f, spectra_out=out / f"s{i}.parquet", chromatograms_out=out / f"c{i}.parquet")
# the decoding processes (if any) count too: this process's peak and the largest worker's
print("rss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
DECODE_WORKERS = 2  # convert_mzml's default threads
_PYMZML = """
import sys
import pymzml
n = 0
for f in sys.argv[2:]:
    for spec in pymzml.run.Reader(f):
        n += len(spec.mz) + len(spec.i)
print(n)
"""
_PYOPENMS = """
import sys
import pyopenms
for f in sys.argv[2:]:
    exp = pyopenms.MSExperiment()
    pyopenms.MzMLFile().load(f, exp)
"""
TOOLS = {"ours": _OURS, "pymzml": _PYMZML, "pyopenms": _PYOPENMS}


def _run_tool(code: str, files: list[Path], work: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU seconds) of one process running ``code`` over ``files``.

    CPU seconds include the worker processes it waited for.  Peak RSS: of the process itself,
    plus ``DECODE_WORKERS`` times its largest worker's when it reports one (an upper bound: the
    pages a forked worker shares with its parent are counted again for each worker).
    """
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out), *map(str, files)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(
            f"benchmark process failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}"
        )
    shutil.rmtree(out, ignore_errors=True)
    # ru_maxrss is KiB on Linux; CPU time is reported too because the machine is shared
    rss_kib = usage.ru_maxrss
    if m := re.search(r"rss_kib (\d+) (\d+)", stdout):
        rss_kib = int(m.group(1)) + DECODE_WORKERS * int(m.group(2))
    return wall, rss_kib / 1024.0, usage.ru_utime + usage.ru_stime


def _median_run(
    code: str, files: list[Path], work: Path, repeats: int
) -> tuple[float, float, float]:
    runs = [_run_tool(code, files, work) for _ in range(repeats)]
    return (
        float(np.median([r[0] for r in runs])),
        float(max(r[1] for r in runs)),
        float(np.median([r[2] for r in runs])),
    )


# --------------------------------------------------------------------------- synthetic inputs
def _header_and_footer(template: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """Split a real mzML into a plain (non-indexed) header, its spectra and a closing footer."""
    start = template.index(b"<mzML")
    list_start = template.index(b"<spectrumList")
    first = template.index(b"<spectrum ", list_start)
    end = template.index(b"</spectrumList>")
    spectra = re.findall(rb"<spectrum .*?</spectrum>", template[first:end], flags=re.S)
    list_tag = template[list_start : template.index(b">", list_start) + 1]
    list_tag = re.sub(rb'count="\d+"', b'count="0"', list_tag)
    header = (
        b'<?xml version="1.0" encoding="utf-8"?>\n' + template[start:list_start] + list_tag + b"\n"
    )
    footer = b"</spectrumList>\n</run>\n</mzML>\n"
    return header, footer, spectra


def write_real_like(path: Path, *, target_bytes: int) -> tuple[int, int]:
    """Repeat the real DDA run's spectra (fresh index and scan number) up to ``target_bytes``."""
    header, footer, spectra = _header_and_footer((SHARED / TEMPLATE).read_bytes())
    index_re = re.compile(rb'index="\d+"')
    scan_re = re.compile(rb'scan=\d+"')
    n = 0
    with open(path, "wb") as fh:
        fh.write(header)
        size = len(header)
        while size < target_bytes:
            for el in spectra:
                head_end = el.index(b">")
                tag = scan_re.sub(
                    b'scan=%d"' % (n + 1),
                    index_re.sub(b'index="%d"' % n, el[:head_end], count=1),
                    count=1,
                )
                fh.write(tag + el[head_end:] + b"\n")
                size += len(el) + 1
                n += 1
        fh.write(footer)
    return n, path.stat().st_size


def _b64z(values: np.ndarray) -> bytes:
    return base64.b64encode(zlib.compress(values.tobytes(), 6))


def write_large_ms1(path: Path, *, target_bytes: int, seed: int = 0) -> tuple[int, int]:
    """Profile-like MS1 spectra of 2k-20k peaks each (64 distinct ones, repeated) up to ``target_bytes``."""
    rng = np.random.default_rng(seed)
    templates = []
    for _ in range(64):
        n = int(rng.integers(2000, 20001))
        mz = np.sort(rng.uniform(100.0, 1500.0, n))
        inten = rng.lognormal(9.0, 1.5, n).astype(np.float32)
        templates.append((n, _b64z(mz), _b64z(inten), float(inten.sum())))
    header = (
        b'<?xml version="1.0" encoding="utf-8"?>\n<mzML xmlns="http://psi.hupo.org/ms/mzml" version="1.1.0">\n'
        b'<cvList count="2"><cv id="MS" fullName="PSI-MS" URI="https://purl.obolibrary.org/obo/ms.obo"/>'
        b'<cv id="UO" fullName="Unit Ontology" URI="https://purl.obolibrary.org/obo/uo.obo"/></cvList>\n'
        b'<fileDescription><fileContent><cvParam cvRef="MS" accession="MS:1000579" name="MS1 spectrum" value=""/>'
        b"</fileContent></fileDescription>\n"
        b'<softwareList count="1"><software id="bench" version="1"><cvParam cvRef="MS" accession="MS:1000799" '
        b'name="custom unreleased software tool" value="binds bench"/></software></softwareList>\n'
        b'<instrumentConfigurationList count="1"><instrumentConfiguration id="IC1">'
        b'<cvParam cvRef="MS" accession="MS:1001911" name="Q Exactive" value=""/></instrumentConfiguration>'
        b"</instrumentConfigurationList>\n"
        b'<dataProcessingList count="1"><dataProcessing id="dp"><processingMethod order="0" softwareRef="bench">'
        b'<cvParam cvRef="MS" accession="MS:1000544" name="Conversion to mzML" value=""/></processingMethod>'
        b"</dataProcessing></dataProcessingList>\n"
        b'<run id="large" defaultInstrumentConfigurationRef="IC1">\n<spectrumList count="0" defaultDataProcessingRef="dp">\n'
    )
    footer = b"</spectrumList>\n</run>\n</mzML>\n"
    k = 0
    with open(path, "wb") as fh:
        fh.write(header)
        size = len(header)
        while size < target_bytes:
            n, mz64, int64, tic = templates[k % len(templates)]
            el = (
                b'<spectrum index="%d" id="scan=%d" defaultArrayLength="%d">\n'
                b'<cvParam cvRef="MS" accession="MS:1000511" name="ms level" value="1"/>\n'
                b'<cvParam cvRef="MS" accession="MS:1000128" name="profile spectrum" value=""/>\n'
                b'<cvParam cvRef="MS" accession="MS:1000130" name="positive scan" value=""/>\n'
                b'<cvParam cvRef="MS" accession="MS:1000285" name="total ion current" value="%.1f"/>\n'
                b'<scanList count="1"><cvParam cvRef="MS" accession="MS:1000795" name="no combination" value=""/>'
                b'<scan><cvParam cvRef="MS" accession="MS:1000016" name="scan start time" value="%.4f" '
                b'unitCvRef="UO" unitAccession="UO:0000010" unitName="second"/></scan></scanList>\n'
                b'<binaryDataArrayList count="2">\n<binaryDataArray encodedLength="%d">'
                b'<cvParam cvRef="MS" accession="MS:1000523" name="64-bit float" value=""/>'
                b'<cvParam cvRef="MS" accession="MS:1000574" name="zlib compression" value=""/>'
                b'<cvParam cvRef="MS" accession="MS:1000514" name="m/z array" value="" unitCvRef="MS" '
                b'unitAccession="MS:1000040" unitName="m/z"/>\n<binary>%s</binary></binaryDataArray>\n'
                b'<binaryDataArray encodedLength="%d">'
                b'<cvParam cvRef="MS" accession="MS:1000521" name="32-bit float" value=""/>'
                b'<cvParam cvRef="MS" accession="MS:1000574" name="zlib compression" value=""/>'
                b'<cvParam cvRef="MS" accession="MS:1000515" name="intensity array" value="" unitCvRef="MS" '
                b'unitAccession="MS:1000131" unitName="number of detector counts"/>\n<binary>%s</binary>'
                b"</binaryDataArray>\n</binaryDataArrayList>\n</spectrum>\n"
                % (k, k + 1, n, tic, k * 0.5, len(mz64), mz64, len(int64), int64)
            )
            fh.write(el)
            size += len(el)
            k += 1
        fh.write(footer)
    return k, path.stat().st_size


# --------------------------------------------------------------------------- main
def _rows(
    label: str,
    files: list[Path],
    n_spectra: int,
    work: Path,
    repeats: int,
    small: Path | None = None,
) -> list[dict]:
    mb = sum(f.stat().st_size for f in files) / 1e6
    times = {name: _median_run(code, files, work, repeats) for name, code in TOOLS.items()}
    ours_s, ours_rss, ours_cpu = times["ours"]
    extra_small = {}
    if small is not None:
        extra_small = {"ours_rss_quarter_size_mb": round(_run_tool(_OURS, [small], work)[1], 1)}
    rows = []
    for base, goal in (("pymzml", ">= 3x"), ("pyopenms", ">= 1x")):
        b_s, b_rss, b_cpu = times[base]
        rows.append(
            {
                "benchmark": f"metabolomics {label} ({mb:.0f} MB, {n_spectra} spectra)",
                "ours": ours_s,
                "baseline": f"{base} ({'iterate + decode' if base == 'pymzml' else 'MzMLFile.load'})",
                "baseline_s": b_s,
                "ratio": b_s / ours_s,
                "goal": goal,
                "extra": {
                    "ours_spectra_per_s": round(n_spectra / ours_s),
                    "ours_MB_per_s": round(mb / ours_s, 1),
                    "baseline_spectra_per_s": round(n_spectra / b_s),
                    "ours_peak_rss_mb": round(ours_rss, 1),
                    "baseline_peak_rss_mb": round(b_rss, 1),
                    "ours_cpu_s": round(ours_cpu, 2),
                    "baseline_cpu_s": round(b_cpu, 2),
                    "load_1min": round(os.getloadavg()[0], 1),
                    **extra_small,
                },
            }
        )
    return rows


def main(quick: bool = False) -> list[dict]:
    """Benchmark rows (see benchmarks/run.py).  ``quick``: ~40 MB synthetic files, one repeat."""
    target = (40 if quick else 400) * 1000 * 1000
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="binds-bench-metabolomics-"))
    try:
        real = sorted(p for p in SHARED.glob("*.mzML*"))
        if real:
            from pipelines.modalities.metabolomics.mzml import MzMLReader

            n_real = 0
            for f in real:
                with MzMLReader(f, threads=1) as r:
                    n_real += sum(len(b) for b in r.spectrum_batches())
            rows += _rows(f"real files x{len(real)}", real, n_real, work, repeats=1 if quick else 3)
        for label, writer in (
            ("real-like spectra", write_real_like),
            ("large MS1 spectra", write_large_ms1),
        ):
            big = work / "big.mzML"
            n, _ = writer(big, target_bytes=target)
            small = work / "quarter.mzML"
            writer(small, target_bytes=target // 4)
            rows += _rows(label, [big], n, work, repeats=1, small=small)
            big.unlink()
            small.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    for row in main(quick="--quick" in sys.argv):
        print(row)
