"""mzML -> Parquet: one row per spectrum (``spectra``) and one per chromatogram (``chromatograms``).

Both tables of one run are written while the file is read once, in row groups of about
``ROW_GROUP_BYTES`` of peaks, so memory is bounded by the batch size, not by the file.  Column
meanings, units and their PSI-MS accessions travel in the Parquet key-value metadata
(``binds:columns``), in the spirit of HUPO-PSI mzPeak.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import InputError, Problem
from pipelines.modalities.metabolomics.mzml import Chromatogram, MzMLReader, RunInfo, Spectrum
from pipelines.toolkit.stage import write_json
from pipelines.toolkit.tables import columns_for, documented_schema, write_table

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
ROW_GROUP_BYTES = 64 << 20  # ~64 MiB of peaks per row group: one row group fits a reader's memory
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1  # level 1: within a few % of level 3's size here, at about twice the speed

# name -> (arrow type, description, PSI-MS / UO accession or None, unit)
SPECTRA_COLUMNS: dict[str, tuple[pa.DataType, str, str | None, str | None]] = {
    "run": (pa.string(), "run name (the mzML file name without extensions)", None, None),
    "sample_id": (
        pa.string(),
        "experiment.yaml sample (samples[].id) the run's file belongs to; null when not linked",
        None,
        None,
    ),
    "index": (pa.int32(), "0-based position of the spectrum in the mzML file", None, None),
    "native_id": (
        pa.string(),
        "spectrum native id as in the mzML 'id' attribute",
        "MS:1000767",
        None,
    ),
    "ms_level": (pa.int16(), "ms level", "MS:1000511", None),
    "rt_s": (pa.float64(), "scan start time, converted to seconds", "MS:1000016", "UO:0000010"),
    "polarity": (
        pa.string(),
        "scan polarity: 'positive' (MS:1000130), 'negative' (MS:1000129) or null",
        "MS:1000465",
        None,
    ),
    "centroided": (
        pa.bool_(),
        "true: centroid spectrum (MS:1000127); false: profile spectrum (MS:1000128)",
        "MS:1000525",
        None,
    ),
    "precursor_mz": (
        pa.float64(),
        "selected ion m/z (isolation window target when absent); null for MS1",
        "MS:1000744",
        "MS:1000040",
    ),
    "precursor_charge": (pa.int16(), "charge state of the selected ion", "MS:1000041", None),
    "precursor_intensity": (
        pa.float32(),
        "peak intensity of the selected ion",
        "MS:1000042",
        "MS:1000131",
    ),
    "isolation_window_target_mz": (
        pa.float64(),
        "isolation window target m/z",
        "MS:1000827",
        "MS:1000040",
    ),
    "isolation_window_lower_offset": (
        pa.float64(),
        "isolation window lower offset",
        "MS:1000828",
        "MS:1000040",
    ),
    "isolation_window_upper_offset": (
        pa.float64(),
        "isolation window upper offset",
        "MS:1000829",
        "MS:1000040",
    ),
    "collision_energy": (pa.float32(), "collision energy", "MS:1000045", "UO:0000266"),
    "tic": (
        pa.float64(),
        "total ion current as reported in the file, else the sum of intensities",
        "MS:1000285",
        "MS:1000131",
    ),
    "base_peak_mz": (
        pa.float64(),
        "base peak m/z as reported in the file, else of the most intense point",
        "MS:1000504",
        "MS:1000040",
    ),
    "base_peak_intensity": (
        pa.float32(),
        "base peak intensity as reported, else the largest intensity",
        "MS:1000505",
        "MS:1000131",
    ),
    "n_peaks": (pa.int32(), "number of (m/z, intensity) points", None, None),
    "mz": (
        pa.list_(pa.float64()),
        "m/z array, float64 (32-bit files are widened exactly)",
        "MS:1000514",
        "MS:1000040",
    ),
    "intensity": (pa.list_(pa.float32()), "intensity array, float32", "MS:1000515", "MS:1000131"),
}

CHROMATOGRAM_COLUMNS: dict[str, tuple[pa.DataType, str, str | None, str | None]] = {
    "run": (pa.string(), "run name (the mzML file name without extensions)", None, None),
    "chromatogram_id": (
        pa.string(),
        "'TIC' / 'BPC' for the computed ones, else the mzML id",
        None,
        None,
    ),
    "source": (
        pa.string(),
        "'computed' from the MS1 spectra of this run, or 'file' (stored in the mzML)",
        None,
        None,
    ),
    "kind": (
        pa.string(),
        "TIC, BPC, SRM, SIC, 'ion current', ... (from the chromatogram type cvParam)",
        None,
        None,
    ),
    "accession": (
        pa.string(),
        "chromatogram type accession: MS:1000235 TIC, MS:1000628 base peak, ...",
        None,
        None,
    ),
    "ms_level": (
        pa.int16(),
        "ms level of the spectra summed (computed ones: 1), else null",
        "MS:1000511",
        None,
    ),
    "precursor_mz": (
        pa.float64(),
        "precursor isolation target m/z (SRM), else null",
        "MS:1000827",
        "MS:1000040",
    ),
    "product_mz": (
        pa.float64(),
        "product isolation target m/z (SRM), else null",
        "MS:1000827",
        "MS:1000040",
    ),
    "time_s": (pa.list_(pa.float64()), "time array, in seconds", "MS:1000595", "UO:0000010"),
    "intensity": (pa.list_(pa.float32()), "intensity array", "MS:1000515", "MS:1000131"),
}


def _schema(
    columns: dict[str, tuple[pa.DataType, str, str | None, str | None]], kind: str
) -> pa.Schema:
    docs = {
        name: {"description": d, "accession": acc, "unit": unit}
        for name, (_, d, acc, unit) in columns.items()
    }
    meta = {
        b"binds:format": f"binds-metabolomics-{kind}".encode(),
        b"binds:format_version": FORMAT_VERSION.encode(),
        b"binds:columns": json.dumps(docs, sort_keys=True).encode(),
    }
    schema = pa.schema([pa.field(n, t) for n, (t, *_rest) in columns.items()], metadata=meta)
    # the field metadata (description, unit) every published table carries (toolkit.tables)
    fmt = f"binds-metabolomics-{kind}"
    return documented_schema(
        schema, format_name=fmt, format_version=FORMAT_VERSION, columns=columns_for(fmt)
    )


SPECTRA_SCHEMA = _schema(SPECTRA_COLUMNS, "spectra")
CHROMATOGRAM_SCHEMA = _schema(CHROMATOGRAM_COLUMNS, "chromatograms")


@dataclass(slots=True)
class ConversionQC:
    """What one conversion found; written as ``<run>.json`` next to the work files."""

    run: str
    file: str
    sha256: str
    size_bytes: int
    sample_id: str | None = None
    n_spectra: int = 0
    spectra_per_ms_level: dict[str, int] = field(default_factory=dict)
    n_peaks: int = 0
    rt_min_s: float | None = None
    rt_max_s: float | None = None
    polarity: str | None = None
    centroided: str | None = None  # centroid | profile | mixed | None
    n_chromatograms_in_file: int = 0
    instrument_models: list[dict[str, str]] = field(default_factory=list)
    instrument_serial: str | None = None
    software: list[dict[str, str]] = field(default_factory=list)
    source_files: list[dict[str, str]] = field(default_factory=list)
    start_time: str | None = None
    indexed: bool = False
    compression: str = "none"
    notes: list[str] = field(default_factory=list)


def run_name(path: str | Path) -> str:
    """``QC_01.mzML.gz`` -> ``QC_01``: the run's name in every table."""
    name = Path(path).name
    for suffix in (".gz", ".idx", ".mzml"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def run_names(paths: list[Path]) -> dict[str, Path]:
    """Unique, path-safe run names for the files of one experiment (sorted by name).

    ``a.mzML`` and ``a.mzML.gz`` in one folder would both be ``a``; they keep their full file
    name (dots made '_') instead, so no run silently replaces another.
    """
    import re

    base = {p: re.sub(r"[^A-Za-z0-9._-]+", "_", run_name(p)) for p in paths}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    out: dict[str, Path] = {}
    for p in sorted(paths):
        name = base[p] if counts[base[p]] == 1 else re.sub(r"[^A-Za-z0-9_-]+", "_", p.name)
        out[name] = p
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------- Arrow arrays
# pa.array() imports pandas on first use (~1 s of CPU in every conversion process); these build
# the same arrays from numpy buffers directly.
_NUMPY = {
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def _validity(values: list) -> tuple[pa.Buffer | None, int]:
    missing = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    n_null = int(missing.sum())
    if not n_null:
        return None, 0
    return pa.py_buffer(np.packbits(~missing, bitorder="little")), n_null


def _numbers(values: list | np.ndarray, typ: pa.DataType) -> pa.Array:
    """A primitive Arrow array; ``None`` entries become nulls."""
    if isinstance(values, np.ndarray):
        data = np.ascontiguousarray(values, dtype=_NUMPY[typ])
        return pa.Array.from_buffers(typ, len(data), [None, pa.py_buffer(data)])
    if None not in values:
        # the common case (no nulls): np.array reads the list in C, ~3x faster than fromiter
        data = np.array(values, dtype=_NUMPY[typ])
        return pa.Array.from_buffers(typ, len(data), [None, pa.py_buffer(data)])
    bitmap, n_null = _validity(values)
    data = np.fromiter(
        (0 if v is None else v for v in values), dtype=_NUMPY[typ], count=len(values)
    )
    return pa.Array.from_buffers(typ, len(data), [bitmap, pa.py_buffer(data)], null_count=n_null)


def _bools(values: list) -> pa.Array:
    bitmap, n_null = _validity(values)
    data = np.packbits(
        np.fromiter((bool(v) for v in values), dtype=bool, count=len(values)), bitorder="little"
    )
    return pa.Array.from_buffers(
        pa.bool_(), len(values), [bitmap, pa.py_buffer(data)], null_count=n_null
    )


def _strings(values: list) -> pa.Array:
    bitmap, n_null = _validity(values)
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(
        np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(values)), out=offsets[1:]
    )
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
        null_count=n_null,
    )


def _lists(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(
        np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays)), out=offsets[1:]
    )
    values = np.concatenate(arrays) if arrays else np.zeros(0, _NUMPY[value_type])
    return pa.ListArray.from_arrays(_numbers(offsets, pa.int32()), _numbers(values, value_type))


def _spectra_batch(
    run: str, spectra: list[Spectrum], sample_id: str | None = None
) -> pa.RecordBatch:
    n = len(spectra)
    tic, bp_mz, bp_int = [], [], []
    for s in spectra:
        # the file's own figures win (they may cover points the converter dropped); else compute
        if s.tic is None or s.base_peak_mz is None or s.base_peak_intensity is None:
            if len(s.intensity):
                k = int(np.argmax(s.intensity))
                calc = (
                    float(s.intensity.sum(dtype=np.float64)),
                    float(s.mz[k]),
                    float(s.intensity[k]),
                )
            else:
                calc = (0.0, None, None)
        tic.append(s.tic if s.tic is not None else calc[0])
        bp_mz.append(s.base_peak_mz if s.base_peak_mz is not None else calc[1])
        bp_int.append(s.base_peak_intensity if s.base_peak_intensity is not None else calc[2])
    cols = [
        _strings([run] * n),
        # one value per file, repeated in C (no per-spectrum Python); a dictionary page on disk
        pa.repeat(pa.scalar(sample_id, pa.string()), n) if sample_id else pa.nulls(n, pa.string()),
        _numbers([s.index for s in spectra], pa.int32()),
        _strings([s.native_id for s in spectra]),
        _numbers([s.ms_level for s in spectra], pa.int16()),
        _numbers([s.rt_s for s in spectra], pa.float64()),
        _strings([s.polarity for s in spectra]),
        _bools([s.centroided for s in spectra]),
        _numbers([s.precursor_mz for s in spectra], pa.float64()),
        _numbers([s.precursor_charge for s in spectra], pa.int16()),
        _numbers([s.precursor_intensity for s in spectra], pa.float32()),
        _numbers([s.isolation_window_target_mz for s in spectra], pa.float64()),
        _numbers([s.isolation_window_lower_offset for s in spectra], pa.float64()),
        _numbers([s.isolation_window_upper_offset for s in spectra], pa.float64()),
        _numbers([s.collision_energy for s in spectra], pa.float32()),
        _numbers(tic, pa.float64()),
        _numbers(bp_mz, pa.float64()),
        _numbers(bp_int, pa.float32()),
        _numbers([len(s.mz) for s in spectra], pa.int32()),
        _lists([s.mz for s in spectra], pa.float64()),
        _lists([s.intensity for s in spectra], pa.float32()),
    ]
    return pa.RecordBatch.from_arrays(cols, schema=SPECTRA_SCHEMA)


def _chromatogram_table(rows: list[dict]) -> pa.Table:
    cols = []
    for name, (typ, *_rest) in CHROMATOGRAM_COLUMNS.items():
        values = [r.get(name) for r in rows]
        if pa.types.is_string(typ):
            cols.append(_strings(values))
        elif pa.types.is_list(typ):
            cols.append(_lists(values, typ.value_type))
        else:
            cols.append(_numbers(values, typ))
    return pa.Table.from_arrays(cols, schema=CHROMATOGRAM_SCHEMA)


@dataclass
class _Summary:
    """What the run-level QC needs of a stream of spectra; summaries of batches add up."""

    levels: dict[int, int] = field(default_factory=dict)
    n_peaks: int = 0
    rt_min: float = np.inf
    rt_max: float = -np.inf
    polarities: set[str] = field(default_factory=set)
    modes: set[bool] = field(default_factory=set)
    # the MS1 spectra's time, TIC and BPC, computed from the arrays whatever the file reports
    ms1_time: list[float] = field(default_factory=list)
    ms1_tic: list[float] = field(default_factory=list)
    ms1_bpc: list[float] = field(default_factory=list)

    def add_spectrum(self, s: Spectrum) -> None:
        self.levels[s.ms_level] = self.levels.get(s.ms_level, 0) + 1
        self.n_peaks += len(s.mz)
        if s.rt_s is not None:
            self.rt_min, self.rt_max = min(self.rt_min, s.rt_s), max(self.rt_max, s.rt_s)
        if s.polarity:
            self.polarities.add(s.polarity)
        if s.centroided is not None:
            self.modes.add(s.centroided)
        if s.ms_level == 1 and s.rt_s is not None:
            self.ms1_time.append(s.rt_s)
            self.ms1_tic.append(
                float(s.intensity.sum(dtype=np.float64)) if len(s.intensity) else 0.0
            )
            self.ms1_bpc.append(float(s.intensity.max()) if len(s.intensity) else 0.0)

    def add(self, other: _Summary) -> None:
        for level, n in other.levels.items():
            self.levels[level] = self.levels.get(level, 0) + n
        self.n_peaks += other.n_peaks
        self.rt_min, self.rt_max = min(self.rt_min, other.rt_min), max(self.rt_max, other.rt_max)
        self.polarities |= other.polarities
        self.modes |= other.modes
        self.ms1_time += other.ms1_time
        self.ms1_tic += other.ms1_tic
        self.ms1_bpc += other.ms1_bpc


def _convert_batch(
    run: str, sample_id: str | None, spectra: list[Spectrum]
) -> tuple[pa.RecordBatch, _Summary]:
    """Parquet rows and summary of one batch.  Runs where the batch is decoded (a worker
    process on large files), so only this compact form travels back to the writing process."""
    summary = _Summary()
    for s in spectra:
        summary.add_spectrum(s)
    return _spectra_batch(run, spectra, sample_id), summary


class _RowGroups:
    """Cut the stream of record batches into row groups of ~``target`` bytes of peaks.

    Row groups depend only on the data (not on how the reader batched it), so the same file
    gives the same bytes whatever the batch size or thread count.
    """

    def __init__(self, writer: pq.ParquetWriter, target: int):
        self.writer, self.target = writer, target
        self.batches: list[pa.RecordBatch] = []
        self.sizes: list[np.ndarray] = []
        # Parquet encoding and compression release the GIL: a writer thread lets them overlap
        # with parsing.  One thread keeps row groups in order; at most two wait (bounded memory).
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-write")
        self._pending: deque[Future] = deque()

    def _write(self, part: pa.Table) -> None:
        while len(self._pending) >= 2:
            self._pending.popleft().result()
        self._pending.append(
            self._pool.submit(self.writer.write_table, part, row_group_size=max(1, part.num_rows))
        )

    def close(self) -> None:
        """Wait for every queued row group (re-raising a write error), then stop the thread."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)

    def add(self, rb: pa.RecordBatch) -> None:
        self.batches.append(rb)
        # 12 bytes per peak (float64 m/z + float32 intensity) plus the scalar columns
        col = rb.column("n_peaks")  # read through its buffer: .to_numpy() would import pandas
        n_peaks = np.frombuffer(col.buffers()[1], dtype=np.int32)[
            col.offset : col.offset + len(col)
        ]
        self.sizes.append(n_peaks.astype(np.int64) * 12 + 128)
        self.flush()

    def flush(self, *, final: bool = False) -> None:
        if not self.batches:
            return
        cum = np.cumsum(np.concatenate(self.sizes))
        if not final and cum[-1] < self.target:
            return
        table = pa.Table.from_batches(self.batches)
        start = 0
        while start < table.num_rows:
            base = cum[start - 1] if start else 0
            stop = int(np.searchsorted(cum, base + self.target, side="left")) + 1
            if stop > table.num_rows:
                if not final:
                    break
                stop = table.num_rows
            self._write(table.slice(start, stop - start))
            start = stop
        rest = table.slice(start)
        self.batches = rest.to_batches() if rest.num_rows else []
        self.sizes = [cum[start:] - (cum[start - 1] if start else 0)] if rest.num_rows else []
        if self.sizes:
            # store per-row sizes again (cumsum is recomputed on the next flush)
            self.sizes = [np.diff(np.concatenate([[0], self.sizes[0]]))]


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # byte_stream_split on the float columns lets zstd find the repeated exponent bytes of
    # m/z and intensity values: ~30 % smaller files for the same compression time
    return pq.ParquetWriter(
        path,
        schema,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        use_dictionary=["run", "sample_id", "polarity", "source", "kind", "accession"],
        use_byte_stream_split=["mz.list.element", "intensity.list.element"],
        write_statistics=["run", "index", "ms_level", "rt_s", "precursor_mz"],
        store_schema=True,
    )


def _write_spectra(
    reader: MzMLReader,
    path: Path,
    *,
    run: str,
    sample_id: str | None,
    row_group_bytes: int,
) -> _Summary:
    """Parse every spectrum of ``reader`` into ``path`` (rows of :data:`SPECTRA_SCHEMA`, row
    groups of about ``row_group_bytes``); returns what the spectra add up to."""
    totals = _Summary()
    with _parquet_writer(path, SPECTRA_SCHEMA) as writer:
        groups = _RowGroups(writer, row_group_bytes)
        try:
            for record_batch, summary in reader.map_batches(
                partial(_convert_batch, run, sample_id)
            ):
                totals.add(summary)
                groups.add(record_batch)
            groups.flush(final=True)
        finally:
            groups.close()
    return totals


def _computed_chromatograms(run: str, totals: _Summary) -> list[dict]:
    """The TIC and BPC of the run's MS1 spectra as chromatogram rows, in RT order."""
    order = np.argsort(np.asarray(totals.ms1_time), kind="stable")
    return [
        {
            "run": run,
            "chromatogram_id": name,
            "source": "computed",
            "kind": name,
            "accession": acc,
            "ms_level": 1,
            "time_s": np.asarray(totals.ms1_time, np.float64)[order],
            "intensity": np.asarray(values, np.float32)[order],
        }
        for name, values, acc in (
            ("TIC", totals.ms1_tic, "MS:1000235"),
            ("BPC", totals.ms1_bpc, "MS:1000628"),
        )
    ]


def _conversion_notes(info: RunInfo, *, label: str, n_spectra: int, n_in_file: int) -> list[str]:
    """The reader's notes on the file, and what the counts say: no spectra, or fewer or more
    than the spectrumList declares."""
    notes = list(info.notes)
    if n_spectra == 0:
        notes.append(
            f"{label} holds no spectra (chromatograms only): spectra table is empty, "
            f"{n_in_file} chromatogram(s) kept"
        )
    if info.spectrum_count_declared is not None and info.spectrum_count_declared != n_spectra:
        notes.append(
            f"{label}: spectrumList declares {info.spectrum_count_declared} spectra, "
            f"the file holds {n_spectra} (a cut or filtered file)"
        )
    return notes


def _conversion_qc(
    totals: _Summary,
    info: RunInfo,
    *,
    run: str,
    label: str,
    sample_id: str | None,
    n_in_file: int,
) -> ConversionQC:
    """What one conversion found, from the spectra's totals and the file's header."""
    n_spectra = sum(totals.levels.values())
    return ConversionQC(
        run=run,
        file=label,
        sha256=info.sha256 or "",
        size_bytes=info.size_bytes,
        sample_id=sample_id,
        n_spectra=n_spectra,
        spectra_per_ms_level={f"ms{k}": v for k, v in sorted(totals.levels.items())},
        n_peaks=totals.n_peaks,
        rt_min_s=float(totals.rt_min) if n_spectra and np.isfinite(totals.rt_min) else None,
        rt_max_s=float(totals.rt_max) if n_spectra and np.isfinite(totals.rt_max) else None,
        polarity="mixed" if len(totals.polarities) > 1 else next(iter(totals.polarities), None),
        centroided="mixed"
        if len(totals.modes) > 1
        else (
            {True: "centroid", False: "profile"}[next(iter(totals.modes))] if totals.modes else None
        ),
        n_chromatograms_in_file=n_in_file,
        instrument_models=info.instrument_models,
        instrument_serial=info.instrument_serial,
        software=info.software,
        source_files=info.source_files,
        start_time=info.start_time,
        indexed=info.indexed,
        compression=info.compression,
        notes=_conversion_notes(info, label=label, n_spectra=n_spectra, n_in_file=n_in_file),
    )


def convert_mzml(
    *,
    src: str | Path,
    spectra_out: str | Path,
    chromatograms_out: str | Path,
    qc_out: str | Path | None = None,
    run: str | None = None,
    sample_id: str | None = None,
    threads: int = 2,
    row_group_bytes: int = ROW_GROUP_BYTES,
    file_label: str | None = None,
) -> ConversionQC:
    """Convert one mzML (plain, .gz or .idx.gz) to spectra and chromatogram Parquet files.

    Writes ``spectra_out`` (schema :data:`SPECTRA_SCHEMA`), ``chromatograms_out`` (computed
    TIC and BPC of the MS1 spectra, then every chromatogram stored in the file) and, when
    given, ``qc_out`` (JSON of the returned :class:`ConversionQC`).  ``file_label``: the name
    the QC and the log give the file (the run id for human data), else its own name.  ``sample_id``: the
    experiment.yaml sample the file belongs to, in every spectrum row (null when None).  Outputs are written to
    temporary names and renamed at the end, so a failed conversion leaves nothing behind.

    Raises
    ------
    InputError
        The file is not readable mzML: names the file, the spectrum index and what to do.
    """
    src = Path(src)
    run = run or run_name(src)
    # human data: the run id stands for the raw file's name in the QC, the notes and the log
    label = file_label or src.name
    spectra_out, chromatograms_out = Path(spectra_out), Path(chromatograms_out)
    for p in (spectra_out, chromatograms_out):
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp_spectra = spectra_out.with_name(f".{spectra_out.name}.partial")
    tmp_chrom = chromatograms_out.with_name(f".{chromatograms_out.name}.partial")
    try:
        with MzMLReader(src, threads=threads) as reader:
            totals = _write_spectra(
                reader, tmp_spectra, run=run, sample_id=sample_id, row_group_bytes=row_group_bytes
            )
            chrom_rows = _computed_chromatograms(run, totals)
            n_in_file = 0
            for c in reader.chromatograms():
                n_in_file += 1
                chrom_rows.append(_chrom_row(run, c))
            info = reader.finish()
        write_table(
            _chromatogram_table(chrom_rows),
            tmp_chrom,
            format_name="binds-metabolomics-chromatograms",
            format_version=FORMAT_VERSION,
            columns=columns_for("binds-metabolomics-chromatograms"),
            compression=COMPRESSION,
            compression_level=COMPRESSION_LEVEL,
        )
        tmp_spectra.replace(spectra_out)
        tmp_chrom.replace(chromatograms_out)
    except BaseException:
        tmp_spectra.unlink(missing_ok=True)
        tmp_chrom.unlink(missing_ok=True)
        raise
    qc = _conversion_qc(
        totals, info, run=run, label=label, sample_id=sample_id, n_in_file=n_in_file
    )
    for note in qc.notes:
        log.info("note: %s", note)
    log.info(
        "%s: %d spectra (%s), %d peaks, %d chromatograms in the file",
        label,
        qc.n_spectra,
        qc.spectra_per_ms_level,
        qc.n_peaks,
        n_in_file,
    )
    if qc_out:
        write_json(qc_out, asdict(qc))
    return qc


def _chrom_row(run: str, c: Chromatogram) -> dict:
    return {
        "run": run,
        "chromatogram_id": c.native_id,
        "source": "file",
        "kind": c.kind,
        "accession": c.accession,
        "ms_level": None,
        "precursor_mz": c.precursor_mz,
        "product_mz": c.product_mz,
        "time_s": c.time_s,
        "intensity": c.intensity,
    }


def read_conversion_qc(path: str | Path) -> ConversionQC:
    return ConversionQC(**json.loads(Path(path).read_text()))


def check_readable(path: str | Path) -> list[Problem]:
    """Preflight of one mzML: the header, then every element walked without decoding (its size
    against the element cap, a gzip file's expansion against the decompressed-size cap, a file
    cut short), stopping at the first problem; memory stays one element."""
    try:
        with MzMLReader(path, threads=1) as reader:
            reader.scan()
    except InputError as err:
        return list(err.problems)
    return []


__all__ = [
    "CHROMATOGRAM_SCHEMA",
    "SPECTRA_SCHEMA",
    "ConversionQC",
    "RunInfo",
    "check_readable",
    "convert_mzml",
    "read_conversion_qc",
    "run_name",
    "run_names",
]
