"""Magnesium forms and the share of elemental magnesium in each, from molar masses.

The share of a salt is ``n * M(Mg) / M(salt)`` for its usual supplement formula (hydrate where
supplements normally use the hydrate). Atomic weights are IUPAC/CIAAW abridged standard atomic
weights; formulas are those listed by PubChem for the compound. docs/doses.md gives the table.
A product label that states elemental magnesium wins over these numbers: pass ``elemental_mg``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from collector.errors import ConfigError

# IUPAC (CIAAW) abridged standard atomic weights, g/mol.
ATOMIC_WEIGHTS: dict[str, float] = {
    "Mg": 24.305,
    "C": 12.011,
    "H": 1.008,
    "N": 14.007,
    "O": 15.999,
    "S": 32.06,
    "Cl": 35.45,
}

_ELEMENT_RE = re.compile(r"([A-Z][a-z]?)(\d*)")


class Form(StrEnum):
    """The chemical form of a magnesium supplement."""

    glycinate = "glycinate"
    bisglycinate = "bisglycinate"
    citrate = "citrate"
    oxide = "oxide"
    threonate = "threonate"
    malate = "malate"
    taurate = "taurate"
    chloride = "chloride"
    sulfate = "sulfate"
    other = "other"


FORM_NAMES: tuple[str, ...] = tuple(f.value for f in Form)


@dataclass(frozen=True, slots=True)
class FormInfo:
    form: Form
    compound: str
    formula: str  # Hill-style formula of the salt as dosed (hydrate water included)

    @property
    def share(self) -> float:
        """Mass fraction of elemental magnesium in the compound (0-1)."""
        return elemental_share_of(self.formula)


def molar_mass(formula: str) -> float:
    """Molar mass in g/mol of a simple formula such as ``C4H8MgN2O4`` (no brackets)."""
    total = 0.0
    pos = 0
    for m in _ELEMENT_RE.finditer(formula):
        if m.start() != pos or not m.group(0):
            break
        total += ATOMIC_WEIGHTS[m.group(1)] * (int(m.group(2)) if m.group(2) else 1)
        pos = m.end()
    if pos != len(formula) or total == 0:
        raise ValueError(f"cannot parse formula {formula!r}")
    return total


def elemental_share_of(formula: str) -> float:
    mg = re.search(r"Mg(\d*)", formula)
    if mg is None:
        raise ValueError(f"formula {formula!r} has no Mg")
    n = int(mg.group(1)) if mg.group(1) else 1
    return n * ATOMIC_WEIGHTS["Mg"] / molar_mass(formula)


FORMS: dict[Form, FormInfo] = {
    i.form: i
    for i in (
        # Magnesium bis(glycinate), Mg(C2H4NO2)2, anhydrous.
        FormInfo(Form.glycinate, "magnesium glycinate", "C4H8MgN2O4"),
        FormInfo(Form.bisglycinate, "magnesium bisglycinate", "C4H8MgN2O4"),
        # Trimagnesium dicitrate, Mg3(C6H5O7)2, anhydrous.
        FormInfo(Form.citrate, "trimagnesium dicitrate", "C12H10Mg3O14"),
        FormInfo(Form.oxide, "magnesium oxide", "MgO"),
        # Magnesium L-threonate, Mg(C4H7O5)2.
        FormInfo(Form.threonate, "magnesium L-threonate", "C8H14MgO10"),
        # Magnesium malate, MgC4H4O5.
        FormInfo(Form.malate, "magnesium malate", "C4H4MgO5"),
        # Magnesium taurate, Mg(C2H6NO3S)2.
        FormInfo(Form.taurate, "magnesium taurate", "C4H12MgN2O6S2"),
        # Magnesium chloride hexahydrate, MgCl2·6H2O (the form sold as a supplement).
        FormInfo(Form.chloride, "magnesium chloride hexahydrate", "Cl2H12MgO6"),
        # Magnesium sulfate heptahydrate (Epsom salt), MgSO4·7H2O.
        FormInfo(Form.sulfate, "magnesium sulfate heptahydrate", "H14MgO11S"),
    )
}


def elemental_share(form: Form) -> float | None:
    """Elemental share of ``form``, or None for ``other`` (the caller must give elemental mg)."""
    info = FORMS.get(form)
    return None if info is None else info.share


def parse_form(value: str) -> Form:
    """``value`` as a :class:`Form` (case and spaces ignored); ValueError lists the allowed ones."""
    key = value.strip().lower().replace(" ", "").replace("-", "")
    if key.startswith("magnesium"):
        key = key.removeprefix("magnesium")
    try:
        return Form(key)
    except ValueError:
        raise ValueError(
            f"unknown form {value!r}; use one of: {', '.join(FORM_NAMES)}"
        ) from None


def configured_form(value: str, key: str = "doses.default_form") -> Form:
    """A form from the settings (``doses.default_form``); a :class:`ConfigError` naming the key
    and the allowed forms otherwise. The settings do not know the forms; the dose service and the
    command line check it when they start."""
    try:
        return parse_form(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
