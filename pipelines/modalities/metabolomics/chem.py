"""Monoisotopic masses of formulas and adducts (for targets given as formula + adduct).

Masses are the IUPAC/AME monoisotopic masses of the most abundant isotope of each element.
"""

from __future__ import annotations

import re

from pipelines.errors import InputError, Problem

ELECTRON = 0.000548579909
PROTON = 1.007276466621

MONOISOTOPIC = {
    "H": 1.00782503207,
    "C": 12.0,
    "N": 14.0030740048,
    "O": 15.99491461956,
    "P": 30.97376163,
    "S": 31.972071,
    "F": 18.99840322,
    "Cl": 34.96885268,
    "Br": 78.9183371,
    "I": 126.904473,
    "Na": 22.9897692809,
    "K": 38.96370668,
    "Si": 27.9769265325,
    "Se": 79.9165213,
    "B": 11.0093054,
    "Fe": 55.9349375,
    "Mg": 23.9850417,
    "Ca": 39.96259098,
    "Zn": 63.9291422,
    "Cu": 62.9295975,
    "Li": 7.01600455,
    "As": 74.9215965,
    "Co": 58.933195,
    "Mn": 54.9380451,
    "D": 2.0141017778,
}

# adduct -> (multiplier of M, mass added to n*M, charge); the added mass already accounts for
# the electrons (e.g. [M+H]+ adds a proton, [M+Na]+ adds Na minus an electron)
ADDUCTS: dict[str, tuple[int, float, int]] = {
    "[M+H]+": (1, PROTON, 1),
    "[M+Na]+": (1, MONOISOTOPIC["Na"] - ELECTRON, 1),
    "[M+K]+": (1, MONOISOTOPIC["K"] - ELECTRON, 1),
    "[M+NH4]+": (1, MONOISOTOPIC["N"] + 4 * MONOISOTOPIC["H"] - ELECTRON, 1),
    "[M+H-H2O]+": (1, PROTON - (2 * MONOISOTOPIC["H"] + MONOISOTOPIC["O"]), 1),
    "[M]+": (1, -ELECTRON, 1),
    "[2M+H]+": (2, PROTON, 1),
    "[M+2H]2+": (1, 2 * PROTON, 2),
    "[M-H]-": (1, -PROTON, -1),
    "[M+Cl]-": (1, MONOISOTOPIC["Cl"] + ELECTRON, -1),
    "[M+HCOO]-": (1, MONOISOTOPIC["C"] + MONOISOTOPIC["H"] + 2 * MONOISOTOPIC["O"] + ELECTRON, -1),
    "[M+CH3COO]-": (
        1,
        2 * MONOISOTOPIC["C"] + 3 * MONOISOTOPIC["H"] + 2 * MONOISOTOPIC["O"] + ELECTRON,
        -1,
    ),
    "[M-H-H2O]-": (1, -PROTON - (2 * MONOISOTOPIC["H"] + MONOISOTOPIC["O"]), -1),
    "[M]-": (1, ELECTRON, -1),
    "[2M-H]-": (2, -PROTON, -1),
    "[M-2H]2-": (1, -2 * PROTON, -2),
}
ADDUCTS["[M+FA-H]-"] = ADDUCTS["[M+HCOO]-"]

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


def formula_mass(formula: str) -> float:
    """Monoisotopic neutral mass of a plain formula like ``C8H10N4O2`` (no brackets)."""
    text = formula.replace(" ", "")
    if not text or _TOKEN.sub("", text):
        raise ValueError(f"{formula!r} is not a plain molecular formula like C8H10N4O2")
    mass = 0.0
    for element, count in _TOKEN.findall(text):
        if element not in MONOISOTOPIC:
            raise ValueError(f"unknown element {element!r} in {formula!r}")
        mass += MONOISOTOPIC[element] * (int(count) if count else 1)
    return mass


def adduct_mz(neutral_mass: float, adduct: str) -> float:
    """m/z of ``adduct`` (e.g. ``[M+H]+``) of a neutral monoisotopic mass."""
    key = adduct.replace(" ", "")
    if key not in ADDUCTS:
        raise ValueError(f"unknown adduct {adduct!r}; known: {', '.join(ADDUCTS)}")
    mult, add, charge = ADDUCTS[key]
    return (mult * neutral_mass + add) / abs(charge)


def target_mz(*, formula: str, adduct: str, file: str, where: str) -> float:
    try:
        return adduct_mz(formula_mass(formula), adduct)
    except ValueError as err:
        raise InputError(
            Problem(
                str(err),
                file=file,
                where=where,
                hint="give 'mz' directly, or a formula like C6H12O6 and an adduct like [M+H]+",
            )
        ) from None
