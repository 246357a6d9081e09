"""One job-record reader (issue 20): the usage record, the QC report and the Prefect reporter
read a run's jobs through ``pipelines.describe.jobs`` (the logger plugin's events), so they
cannot disagree on which jobs ran, their attempts or their Slurm job ids."""

from __future__ import annotations

import json

from pipelines.describe.jobs import JobBook, read_jobs
from pipelines.describe.report import rule_runs
from pipelines.describe.usage import collect_jobs
from pipelines.toolkit.stage import StagedDataset


def _events(stage: StagedDataset) -> list[dict]:
    bench = str(stage.meta_dir / "benchmarks" / "fsc.tsv")
    info = {
        "event": "job_info",
        "jobid": 3,
        "rule": "cryoem_fsc",
        "wildcards": {"map": "m1"},
        "threads": 2,
        "resources": {"mem_mb": 1200},
        "log": [],
        "benchmark": bench,
        "input": ["/in/a.mrc"],
        "output": [str(stage.data_dir / "fsc.parquet")],
    }
    return [
        {"t": 10.0, "event": "job_info", "jobid": 0, "rule": "all"},
        {"t": 10.0, **info},
        {"t": 10.5, "event": "external_jobid", "jobid": 3, "external_jobid": "101"},
        {"t": 12.0, "event": "job_error", "jobid": 3},
        {"t": 13.0, **info},  # Snakemake restarts the job: the second attempt
        {"t": 13.2, "event": "external_jobid", "jobid": 3, "external_jobid": "102"},
        {"t": 16.5, "event": "job_finished", "jobid": 3},
        {"t": 16.6, "event": "job_finished", "jobid": 3},  # a repeated end changes nothing
    ]


def _stage(tmp_path) -> StagedDataset:
    stage = StagedDataset(tmp_path / "stage")
    stage.meta_dir.mkdir(parents=True)
    (stage.meta_dir / "benchmarks").mkdir()
    (stage.meta_dir / "benchmarks" / "fsc.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        "3.5\t0:00:03\t80.5\t90\t70\t75\t1\t2\t95\t3.25\n"
    )
    lines = [json.dumps(e) for e in _events(stage)]
    # a kill can cut the last line the plugin was writing: it is skipped, not fatal
    stage.events_file.write_text("\n".join(lines) + '\n{"t": 17.0, "event": "job_in')
    return stage


def test_the_events_become_one_record_per_attempt(tmp_path):
    stage = _stage(tmp_path)
    jobs = [j for j in read_jobs(stage.events_file) if j.rule != "all"]
    assert [(j.key, j.status, j.external_jobid) for j in jobs] == [
        ("3.1", "failed", "101"),
        ("3.2", "completed", "102"),
    ]
    assert jobs[1].name == "cryoem_fsc[map=m1] (attempt 2)"
    assert (jobs[1].started, jobs[1].finished) == (13.0, 16.5)
    assert read_jobs(tmp_path / "no-such-file") == []


def test_report_and_usage_read_the_same_jobs(tmp_path):
    stage = _stage(tmp_path)
    rows = rule_runs(stage)
    assert rows == [
        {
            "rule": "cryoem_fsc[map=m1]",
            "threads": 2,
            "mem_mb": 1200,
            "status": "completed",
            "seconds": 3.5,
            "cpu_s": 3.25,
            "max_rss_mb": 80.5,
        }
    ]
    jobs, notes = collect_jobs(stage, use_sacct=False)
    assert [(j["jobid"], j["rule"]) for j in jobs] == [(3, "cryoem_fsc")]
    # both attempts are charged: the Slurm ids of every attempt, in order
    assert [a["job_id"] for a in jobs[0]["slurm"]] == ["101", "102"]
    assert jobs[0]["output"] == [str(stage.data_dir / "fsc.parquet")]
    assert jobs[0]["cpu_s"] == 3.25
    assert notes == []  # its benchmark file was found through the events


def test_a_live_reader_gets_each_change_once():
    book = JobBook(console_log="/x/snakemake.log")
    changed = [
        book.apply(ev, now=99.0)
        for ev in (
            {"event": "job_info", "jobid": 1, "rule": "r"},
            {"event": "progress", "done": 1, "total": 2},
            {"event": "job_finished", "jobid": 1},
            {"event": "job_finished", "jobid": 1},
            {"event": "job_finished", "jobid": 7},  # never announced
        )
    ]
    assert [c.key if c else None for c in changed] == ["1.1", None, "1.1", None, None]
    assert book.jobs[0].started == book.jobs[0].finished == 99.0  # no "t": the reader's clock
    assert book.jobs[0].console_log == "/x/snakemake.log"
    assert book.unfinished() == []
