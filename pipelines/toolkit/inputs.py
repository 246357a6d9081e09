"""The run folder as the only source of input: path guard, raw-file discovery, input list.

Every file a workflow reads must come from the run folder the operator named. A path written in
experiment.yaml (``cryoem.map: half1.map``), a file name inside a plate list, a file found by
extension: each goes through :class:`RunFolder`, which refuses

* a reference that leaves the folder (``../other/half1.map``, ``/abs/other.map``), and
* a symbolic link whose target is outside the folder, unless the target lies inside one of the
  storage roots the operator allows (``BINDS_ALLOWED_ROOTS``: units often link raw data from the
  instrument share instead of copying it).

The same resolved list feeds the workflow's rules and ``_meta/run.json`` (provenance), so the
inputs recorded are exactly the files read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import InputError, Problem

#: Storage roots (``os.pathsep``-separated absolute folders) into which a symbolic link inside a
#: run folder may point, e.g. ``/mnt/instrument-share:/data/raw``.
ALLOWED_ROOTS_ENV = "BINDS_ALLOWED_ROOTS"
EXPERIMENT_FILE = "experiment.yaml"
_LINK_HINT = (
    f"copy the file into the run folder, or let an operator allow its storage root "
    f"({ALLOWED_ROOTS_ENV}=/path/to/share)"
)


def allowed_roots(extra: Iterable[str | Path] = ()) -> tuple[Path, ...]:
    """The storage roots symbolic links may point into: ``BINDS_ALLOWED_ROOTS`` plus ``extra``."""
    raw = [p for p in os.environ.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return tuple(Path(os.path.realpath(p)) for p in [*raw, *extra])


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


@dataclass(frozen=True, slots=True)
class InputSet:
    """What a modality's workflow will read from a run folder: files (sorted, absolute) and the
    problems that stop the run before any rule (none: runnable)."""

    files: tuple[Path, ...] = ()
    problems: tuple[Problem, ...] = ()

    def raise_if_problems(self) -> InputSet:
        if self.problems:
            raise InputError(list(self.problems))
        return self


@dataclass(slots=True)
class RunFolder:
    """A run folder and the guard every path read from it goes through.

    Parameters
    ----------
    root
        The run folder (made absolute; symbolic links in the folder's own path are fine).
    roots
        Storage roots links may point into; default :func:`allowed_roots`.
    """

    root: Path
    roots: tuple[Path, ...] = field(default_factory=allowed_roots)

    def __post_init__(self) -> None:
        self.root = Path(os.path.abspath(self.root))

    @property
    def real_root(self) -> Path:
        return Path(os.path.realpath(self.root))

    def rel(self, path: str | Path) -> str:
        """``path`` relative to the run folder (POSIX), for messages and provenance."""
        p = Path(os.path.abspath(path))
        return p.relative_to(self.root).as_posix() if _within(p, self.root) else str(p)

    # -- the guard ---------------------------------------------------------------------------
    def link_problem(
        self, path: Path, *, file: str | None = None, where: str | None = None
    ) -> Problem | None:
        """A problem if ``path`` (inside the folder) is, or passes through, a link leading out."""
        real = Path(os.path.realpath(path))
        if _within(real, self.real_root) or any(_within(real, r) for r in self.roots):
            return None
        return Problem(
            f"is a symbolic link to {real}, outside the run folder",
            file=file or self.rel(path),
            where=where,
            hint=_LINK_HINT,
        )

    def reference(
        self,
        name: str | os.PathLike[str],
        *,
        where: str,
        file: str = EXPERIMENT_FILE,
        must_exist: bool = True,
        what: str = "file",
    ) -> Path:
        """Resolve a path written in a metadata file (``where`` is its YAML path or line).

        Raises :class:`InputError` when it leaves the run folder, links out of it, or (with
        ``must_exist``) does not exist.  The file's contents are never read or quoted here.
        """
        text = os.fspath(name)
        candidate = Path(os.path.normpath(self.root / text))
        if not _within(candidate, self.root):
            raise InputError(
                Problem(
                    f"{text!r} is outside the run folder",
                    file=file,
                    where=where,
                    hint="paths are relative to the run folder, without '..' or a leading '/'; "
                    "copy or link the file into the run folder",
                )
            )
        if problem := self.link_problem(candidate, file=file, where=where):
            raise InputError(
                Problem(f"{text!r} {problem.message}", file=file, where=where, hint=_LINK_HINT)
            )
        if must_exist and not candidate.exists():
            raise InputError(
                Problem(
                    f"{what} {text!r} not found in the run folder",
                    file=file,
                    where=where,
                    hint=f"paths are relative to {self.root}",
                )
            )
        return candidate

    # -- discovery ---------------------------------------------------------------------------
    def visible_files(self) -> list[Path]:
        """Every regular file of the folder (any depth), hidden files and folders skipped.

        Symbolic links to folders are not followed (a link could make the walk leave the folder
        or loop); links to files are listed, and checked by :meth:`find`.
        """
        out: list[Path] = []
        for top, dirs, files in os.walk(self.root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if not name.startswith("."):
                    p = Path(top) / name
                    if p.is_file():
                        out.append(p)
        return sorted(out)

    def find(self, patterns: Sequence[str], *, problems: list[Problem] | None = None) -> list[Path]:
        """Visible files whose path relative to the folder matches one of ``patterns``.

        Patterns are globs relative to the folder; ``**/`` matches any depth including none;
        case is ignored.
        Links leading out of the folder are not returned: each becomes a problem in
        ``problems`` (or raises :class:`InputError` when ``problems`` is None).
        """
        out: list[Path] = []
        bad: list[Problem] = []
        for p in self.visible_files():
            rel = Path(self.rel(p))
            if not any(_match(rel, pat) for pat in patterns):
                continue
            if problem := self.link_problem(p):
                bad.append(problem)
            else:
                out.append(p)
        if problems is not None:
            problems.extend(bad)
        elif bad:
            raise InputError(bad)
        return out


def _match(rel: Path, pattern: str) -> bool:
    """``Path.match`` anchored at the run folder, with ``**/`` also matching no folder, and
    case-insensitive (instrument PCs on Windows write ``.MRC``, ``.CSV``, ``.mzml``)."""
    rel, pattern = Path(rel.as_posix().lower()), pattern.lower()
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return rel.match(tail) if "/" not in tail else Path("x", rel).match(pattern)
    return rel.match(pattern) and len(rel.parts) == len(Path(pattern).parts)


# -- sample links ------------------------------------------------------------------------------
_GLOB_CHARS = frozenset("*?[")


def sample_of_files(
    run_dir: str | Path,
    experiment: dict,
    inputs: Iterable[Path],
    *,
    modality: str,
    problems: list[Problem] | None = None,
) -> dict[Path, str]:
    """Which experiment.yaml sample each input file belongs to: ``{absolute path: sample id}``.

    ``samples[].files`` lists paths, folders or globs relative to the run folder.  Every entry goes
    through the guard (a path leaving the folder or linking out of it is refused) and must name
    one of the modality's ``inputs`` (a typo, or a file the workflow does not read, is a
    problem, not silently ignored); a file claimed by two samples is a problem too.  When no
    sample lists files and the experiment has exactly one sample, every input belongs to it.
    Inputs no sample names are left out (their rows carry a null ``sample_id``).

    Problems go to ``problems`` (or raise :class:`InputError` when it is None); each names
    ``experiment.yaml`` and the YAML path (``samples[1].files[0]``).
    """
    folder = RunFolder(Path(run_dir))
    wanted = {Path(os.path.abspath(p)) for p in inputs}
    samples = [s for s in experiment.get("samples") or [] if isinstance(s, dict)]
    found: list[Problem] = []
    out: dict[Path, str] = {}
    claimed_by: dict[Path, str] = {}
    for i, sample in enumerate(samples):
        sid = str(sample.get("id"))
        for j, entry in enumerate(sample.get("files") or []):
            where = f"samples[{i}].files[{j}]"
            matched = _sample_entry(folder, str(entry), where=where, problems=found)
            if matched is None:
                continue
            hits = sorted(p for p in matched if p in wanted)
            if not hits:
                found.append(
                    Problem(
                        f"{entry!r} is not one of the {modality} input files",
                        file=EXPERIMENT_FILE,
                        where=where,
                        hint="name raw files the workflow reads, relative to the run folder: "
                        + ", ".join(folder.rel(p) for p in sorted(wanted)[:3])
                        + (" ..." if len(wanted) > 3 else ""),
                    )
                )
            for p in hits:
                other = claimed_by.setdefault(p, sid)
                if other != sid:
                    found.append(
                        Problem(
                            f"{folder.rel(p)} is listed for samples {other!r} and {sid!r}",
                            file=EXPERIMENT_FILE,
                            where=where,
                            hint="a raw file belongs to one sample",
                        )
                    )
                out[p] = other
    if not claimed_by and len(samples) == 1 and not found:
        out = dict.fromkeys(sorted(wanted), str(samples[0].get("id")))
    if problems is not None:
        problems.extend(found)
    elif found:
        raise InputError(found)
    return out


def _sample_entry(
    folder: RunFolder, entry: str, *, where: str, problems: list[Problem]
) -> list[Path] | None:
    """The files one ``samples[].files`` entry names (a path or a glob); None after a problem."""
    if not _GLOB_CHARS & set(entry):
        try:
            path = folder.reference(entry, where=where, what="sample file")
        except InputError as err:
            problems.extend(err.problems)
            return None
        # a folder (a 10x mtx folder, a run's subfolder) stands for the files in it
        return [p for p in folder.visible_files() if _within(p, path)] if path.is_dir() else [path]
    if entry.startswith("/") or ".." in Path(entry).parts:
        problems.append(
            Problem(
                f"{entry!r} is outside the run folder",
                file=EXPERIMENT_FILE,
                where=where,
                hint="patterns are relative to the run folder, without '..' or a leading '/'",
            )
        )
        return None
    bad: list[Problem] = []
    matched = folder.find([entry], problems=bad)
    for p in bad:
        problems.append(Problem(p.message, file=p.file, where=where, hint=p.hint))
    if not matched and not bad:
        problems.append(
            Problem(
                f"pattern {entry!r} matches no file in the run folder",
                file=EXPERIMENT_FILE,
                where=where,
                hint=f"patterns are relative to {folder.root}",
            )
        )
        return None
    return matched
