"""A fifth, toy modality (CSV tables -> Parquet) living in its own package: the contract test.

Everything binds needs comes from this package and its registration
(``binds_toytable-0.1.dist-info/entry_points.txt``: group ``binds.modalities``); no file of
binds-pipelines names it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, Problem
from pipelines.modalities import ModalitySpec
from pipelines.toolkit.inputs import InputSet, RunFolder

HERE = Path(__file__).resolve().parent
RAW_PATTERNS = ("**/*.csv",)
MODALITY = ModalitySpec(
    name="toytable",
    description="Toy tables: CSV -> Parquet (the modality-contract test)",
    technique="tabulation",
    raw_patterns=RAW_PATTERNS,
    software=("pyarrow",),
    main_data="data/table.parquet",
    workflow=HERE / "workflow" / "main.smk",
    schema=HERE / "toytable.schema.json",
)


def list_inputs(run_dir: str | Path, experiment: dict[str, Any]) -> InputSet:
    problems: list[Problem] = []
    files = RunFolder(Path(run_dir)).find(RAW_PATTERNS, problems=problems)
    return InputSet(files=tuple(files), problems=tuple(problems))


def preflight(run_dir: Path, experiment: dict[str, Any]) -> list[Problem]:
    problems = []
    for f in list_inputs(run_dir, experiment).files:
        header = f.read_text().splitlines()[:1]
        if not header or "," not in header[0]:
            problems.append(
                Problem(
                    "no comma-separated header line",
                    file=f.name,
                    where="line 1",
                    hint="the first line names the columns, e.g. sample,value",
                )
            )
    return problems


def make_demo_run(run_dir: Path, *, seed: int = 0) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "values.csv").write_text(
        "sample,value\n" + "".join(f"S{i},{i * (seed + 1)}\n" for i in range(5))
    )
    (run_dir / "experiment.yaml").write_text(
        "schema_version: 1\nrequest_id: BINDS-TOY-0001\ntitle: Toy table run\nmodality: toytable\n"
        "instrument: {manufacturer: Toy, model: Tabulator}\nacquired: 2026-11-20\n"
        "access: {level: open}\npersonal_data: false\nlicense: CC0-1.0\nsamples:\n  - id: S1\n    organism: NCBITaxon:9606\n"
        "toytable:\n  delimiter: ','\n"
    )
    return run_dir


def convert(*, sources: list[str], dest: str, delimiter: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    tables = []
    for src in sources:
        try:
            tables.append(
                pacsv.read_csv(src, parse_options=pacsv.ParseOptions(delimiter=delimiter))
            )
        except pa.ArrowInvalid as err:
            raise InputError(Problem(str(err).splitlines()[0], file=Path(src).name)) from None
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), dest)


def write_metrics(*, table: str, dest: str) -> None:
    import pyarrow.parquet as pq

    Path(dest).write_text(
        json.dumps({"n_rows": pq.read_metadata(table).num_rows}, sort_keys=True) + "\n"
    )
