"""Support units: a code from the operator's list, never free text in bills, tags or keys.

The operator lists the unit codes in a text file named by ``BINDS_SUPPORT_UNITS`` (one code a
line, optionally followed by whitespace and the unit's display name; ``#`` starts a comment)::

    # code        name
    cryo-em       Structure analysis unit
    screening     Hit discovery

With the list set, ``support_unit`` in experiment.yaml must be one of its codes (``binds validate``
refuses anything else). Without it, any value shaped like a code (lower-case letters, digits and
``-``, at most 40) is accepted and free text is refused, so a billing export or a Prefect tag
never carries what a user typed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

UNITS_ENV = "BINDS_SUPPORT_UNITS"
UNIT_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def unit_codes() -> dict[str, str] | None:
    """``{code: name}`` from the operator's list, or ``None`` when no list is configured."""
    path = os.environ.get(UNITS_ENV)
    if not path:
        return None
    codes: dict[str, str] = {}
    for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        code, _, name = line.partition(" ")
        if UNIT_CODE.match(code):
            codes[code] = name.strip() or code
    return codes


def unit_problem(value: object) -> tuple[str, str] | None:
    """``(problem, hint)`` when ``value`` is not an accepted support-unit code, else ``None``."""
    try:
        codes = unit_codes()
    except OSError as err:
        return (
            f"the list of support units ({UNITS_ENV}) cannot be read: {err.strerror}",
            "ask the operator",
        )
    if codes is not None:
        if isinstance(value, str) and value in codes:
            return None
        return ("not a support unit of this site", "one of: " + ", ".join(sorted(codes)))
    if isinstance(value, str) and UNIT_CODE.match(value):
        return None
    return (
        "a support unit is a code (lower-case letters, digits, '-'), not free text",
        "e.g. support_unit: cryo-em; the operator lists the codes in " + UNITS_ENV,
    )


def safe_tag_value(value: object) -> str | None:
    """The value for a ``unit:`` tag, or ``None`` when it is not a code (never free text)."""
    return value if isinstance(value, str) and UNIT_CODE.match(value) else None


#: first characters a spreadsheet reads as a formula (or a control that precedes one)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading ``'`` before ``= + - @ tab CR``
    (OWASP's CSV-injection advice), line breaks inside a cell made spaces (a billing import
    reads one line per charge); numbers stay numbers."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_START):
        value = "'" + value
    return value.replace("\r", " ").replace("\n", " ")


__all__ = ["UNITS_ENV", "UNIT_CODE", "safe_cell", "safe_tag_value", "unit_codes", "unit_problem"]
