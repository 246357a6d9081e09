"""The test tiers (tests/conftest.py): markers follow what a test uses, and a test of the fast
tier that starts Snakemake, `binds run`, a Prefect server, Chromium or Slurm fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO, _started_by


@pytest.mark.parametrize(
    "argv, marker",
    [
        ([sys.executable, "-m", "snakemake", "--lint"], "workflow"),
        (["/venv/bin/snakemake", "--cores", "2"], "workflow"),
        (["/venv/bin/binds", "run", "/runs/x"], "workflow"),
        (["/venv/bin/binds", "demo", "--store", "s"], "workflow"),
        ([sys.executable, "-m", "pipelines.cli", "run", "/runs/x"], "workflow"),
        ([sys.executable, "-m", "prefect", "server", "start"], "prefect"),
        ([sys.executable, "-c", "wrapper", "123", sys.executable, "-m", "uvicorn"], "prefect"),
        (["/usr/bin/chromium", "--headless"], "browser"),
        (["sbatch", "job.sh"], "slurm"),
        (["/venv/bin/binds", "validate", "/runs/x"], None),
        ([sys.executable, "-m", "pipelines.cli", "publish", "stage"], None),
        ("git status", None),
    ],
)
def test_the_guard_knows_what_each_command_starts(argv, marker):
    assert _started_by(argv) == marker


def _pytest(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """pytest on ``tmp_path`` with the hooks of tests/conftest.py loaded as a plugin.

    Its temporary folders stay in ``tmp_path``: in the shared /tmp/pytest-of-<user> each nested
    run would delete the oldest kept run's folders (after a whole suite, GBs: 40 s).
    """
    options = ["-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path)]
    options += ["--basetemp", str(tmp_path / "basetemp")]
    options += ["-c", str(tmp_path / "pytest.ini"), *args, str(tmp_path)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)])),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_markers_come_from_fixtures_and_helpers_and_the_guard_fails_the_rest(tmp_path):
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    slow\n    workflow\n    prefect\n    slurm\n    browser\n    kills\n    numba\n"
    )
    (tmp_path / "test_planted.py").write_text(
        textwrap.dedent(
            """
            import subprocess, sys
            import pytest
            import binds_testing
            from binds_testing import run_stage

            @pytest.fixture
            def built(snakemake):  # a fixture on a slow fixture: its users are slow too
                return 1

            def _helper(run_dir):  # a module helper calling a slow helper
                return run_stage(run_dir, run_dir)

            def test_uses_the_fixture(snakemake):
                pass

            def test_uses_a_fixture_built_on_it(built):
                pass

            def test_calls_a_helper_that_runs_snakemake(tmp_path):
                if False:
                    _helper(tmp_path)

            def test_calls_a_helper_as_a_module_attribute(tmp_path):
                if False:
                    binds_testing.run_stage(tmp_path, tmp_path)

            def test_imports_a_helper_in_its_body():
                from binds_testing import kill_when

                if False:
                    kill_when()

            def test_imports_a_re_exported_helper_in_its_body():
                from pipelines.modalities.transcriptomics import cluster_cells

                if False:
                    cluster_cells()

            def test_plain():
                assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0

            def test_starts_snakemake_unmarked():
                subprocess.run([sys.executable, "-m", "snakemake", "--version"])

            def test_swallows_the_failure():
                try:
                    subprocess.run(["sbatch", "--version"])
                except BaseException:
                    pass
            """
        )
    )
    listed = _pytest(tmp_path, "--co", "-m", "slow")
    slow = {line.split("::")[-1] for line in listed.stdout.splitlines() if "::" in line}
    assert slow == {
        "test_uses_the_fixture",
        "test_uses_a_fixture_built_on_it",
        "test_calls_a_helper_that_runs_snakemake",
        "test_calls_a_helper_as_a_module_attribute",
        "test_imports_a_helper_in_its_body",
        "test_imports_a_re_exported_helper_in_its_body",
    }, listed.stdout + listed.stderr
    fast = _pytest(tmp_path, "-m", "not slow", "-rf")
    assert "1 passed" in fast.stdout and "2 failed" in fast.stdout, fast.stdout + fast.stderr
    assert "test_starts_snakemake_unmarked is in the fast tier but started workflow" in fast.stdout
    assert "test_swallows_the_failure is in the fast tier but started slurm" in fast.stdout


def test_users_of_one_shared_build_run_in_one_xdist_worker_that_builds_it_once(tmp_path):
    """`make test` runs ``-n 2 --dist loadgroup``: every user of a session build (its
    xdist_group) goes to the worker that built it, so the build runs once, not once per worker
    (with pytest 9 and xdist 3.8 the groups were silently ignored)."""
    log = tmp_path / "log"
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow\n    workflow\n")
    (tmp_path / "test_shared.py").write_text(
        textwrap.dedent(
            f"""
            import os
            import pytest

            def _write(line):
                with open({str(log)!r}, "a") as f:
                    f.write(line + "\\n")

            @pytest.fixture(scope="session")
            def shared_build(snakemake):  # a session build on a slow fixture
                _write("built " + os.environ["PYTEST_XDIST_WORKER"])

            @pytest.mark.parametrize("n", range(6))
            def test_user(shared_build, n, request):
                _write("used " + os.environ["PYTEST_XDIST_WORKER"] + " " + request.node.nodeid)

            @pytest.mark.parametrize("n", range(6))
            def test_other(n):
                pass
            """
        )
    )
    out = _pytest(tmp_path, "-n", "2", "--dist", "loadgroup")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = log.read_text().splitlines()
    assert len([ln for ln in lines if ln.startswith("built")]) == 1, lines
    assert len({ln.split()[1] for ln in lines}) == 1, lines  # built and used in one worker
    used = [ln.split()[2] for ln in lines if ln.startswith("used")]
    assert len(used) == 6 and all(u.endswith("@shared_build") for u in used), used
