"""The one adapter every Snakemake ``script:`` uses to call a ``pipelines`` function.

A rule's script stays a few lines::

    from pipelines.smk import run_step
    from pipelines.modalities.cryoem import convert_map

    run_step(snakemake, convert_map, src=snakemake.input.map, dest=snakemake.output.zarr)

``run_step`` sends logging to the rule's ``log:`` file and turns an :class:`InputError` into
``<stage>/_meta/errors/<rule>.json`` plus exit status 2, so that ``binds run`` reports the
problem (file, place, hint) instead of a traceback, and exits 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.errors import InputError


def run_step(snakemake: Any, func: Callable[..., Any], /, **kwargs: Any) -> Any:
    log_path = snakemake.log[0] if len(snakemake.log) else None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode="w")]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return func(**kwargs)
    except InputError as err:
        stage = snakemake.config.get("stage_dir")
        if stage:
            err_dir = Path(stage) / "_meta" / "errors"
            err_dir.mkdir(parents=True, exist_ok=True)
            name = f"{snakemake.rule}-{abs(hash(tuple(map(str, snakemake.output)))) % 10**8}.json"
            (err_dir / name).write_text(json.dumps(
                {"rule": snakemake.rule, "problems": [p.to_dict() for p in err.problems]}, indent=2))
        logging.getLogger("pipelines").error("invalid input:\n%s", err)
        sys.exit(2)
    except Exception:
        logging.getLogger("pipelines").exception("rule %s failed", snakemake.rule)
        raise
