"""Snakemake's log lines keep their own time in Prefect (issue #25: they carried the time they
were forwarded)."""

from __future__ import annotations

import logging

from pipelines.orchestrate.monitoring import log_at


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_forwarded_lines_carry_snakemake_time_and_the_run_ids():
    base = logging.getLogger("binds-test-log-times")
    base.setLevel(logging.INFO)
    keep = _Keep()
    base.addHandler(keep)
    # what Prefect's run logger is: an adapter whose extra names the flow run
    run_logger = logging.LoggerAdapter(base, {"flow_run_id": "fr-1", "flow_run_name": "x"})
    # RunReporter._forward_log calls it for every Snakemake log event (needs a flow run)
    log_at(run_logger, logging.INFO, 1_700_000_000.25, "Rule: cryoem_fsc")
    log_at(run_logger, logging.WARNING, 1_700_000_009.5, "late")
    got = [(r.getMessage(), r.created, r.levelno, r.flow_run_id) for r in keep.records]  # type: ignore[attr-defined]
    assert ("snakemake: Rule: cryoem_fsc", 1_700_000_000.25, logging.INFO, "fr-1") in got
    assert ("snakemake: late", 1_700_000_009.5, logging.WARNING, "fr-1") in got
