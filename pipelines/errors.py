"""Errors that the CLI turns into exit codes.

``InputError`` (exit 2) is the user's to fix: invalid metadata, a broken instrument file, a
bad argument.  It carries one or more :class:`Problem` lines, each naming the file, the place
inside it and what to do.  ``RunError`` (exit 1) is a failed run: a rule crashed, the store is
unreachable.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input.

    Rendered as ``file: where: message (hint)``, e.g.
    ``experiment.yaml: samples[1].organism: 'human' is not an NCBITaxon id (did you mean NCBITaxon:9606?)``.
    """

    message: str
    file: str | None = None
    where: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.where) if p]
        text = ": ".join([*parts, self.message])
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "where": self.where, "message": self.message, "hint": self.hint}

    @classmethod
    def from_dict(cls, d: dict) -> Problem:
        return cls(
            message=d["message"], file=d.get("file"), where=d.get("where"), hint=d.get("hint")
        )


class BindsError(Exception):
    """Base class of the errors the CLI reports without a traceback."""

    exit_code = 1


class InputError(BindsError):
    """Invalid input: metadata, an instrument file, an argument.  Exit code 2.

    Parameters
    ----------
    problems
        Every problem found; report them all at once rather than one per run.
    """

    exit_code = 2

    def __init__(
        self,
        problems: list[Problem] | Problem | str,
        *,
        file: str | Path | None = None,
        where: str | None = None,
        hint: str | None = None,
    ):
        if isinstance(problems, str):
            problems = [Problem(problems, file=str(file) if file else None, where=where, hint=hint)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self):
        # keeps the problems whole when raised in a worker process (pickled back to the parent)
        return (self.__class__, (self.problems,))


class RunError(BindsError):
    """A run that failed for a reason other than its input (exit code 1).

    ``details`` holds extra lines for the user, e.g. the tail of a failed rule's log.
    """

    exit_code = 1

    def __init__(self, message: str, *, details: list[str] | None = None):
        self.details: list[str] = list(details or [])
        super().__init__(message)

    def __reduce__(self):
        return (self.__class__, (str(self),), {"details": self.details})


@dataclass(slots=True)
class ProblemList:
    """Collects problems so that a validator can report all of them at once."""

    file: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def add(
        self,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        file: str | None = None,
    ) -> None:
        self.problems.append(Problem(message, file=file or self.file, where=where, hint=hint))

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputError(self.problems)

    def __bool__(self) -> bool:
        return bool(self.problems)


def yaml_path(parts: list[Any]) -> str:
    """Where in a YAML document: ``samples[0].id`` from ``["samples", 0, "id"]``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"
