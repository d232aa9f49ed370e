"""Unit spelling, analyte resolution and lab conversions (crit.grammar.units)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crit.grammar.units import (
    Conversion,
    Linear,
    analyte_of,
    convert,
    is_known_unit,
    linear,
    normalise_unit,
)

# --- spelling ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("mg/dL", "mg/dL"),
        ("mg/dl", "mg/dL"),
        ("MG/DL", "mg/dL"),
        ("mg / dl", "mg/dL"),
        ("mg per dL", "mg/dL"),
        ("mg%", "mg/dL"),
        ("umol/L", "umol/L"),
        ("mcmol/L", "umol/L"),
        ("µmol/L", "umol/L"),  # micro sign U+00B5
        ("μmol/l", "umol/L"),  # Greek mu U+03BC
        ("mmol/L", "mmol/L"),
        ("g/L", "g/L"),
        ("g/dl", "g/dL"),
        ("mcg/mL", "ug/mL"),
        ("x10^9/L", "10^9/L"),
        ("x 10^9/L", "10^9/L"),
        ("10*9/L", "10^9/L"),
        ("10E9/L", "10^9/L"),
        ("10**9/L", "10^9/L"),
        ("×10⁹/L", "10^9/L"),
        ("10^9 cells/L", "10^9/L"),
        ("G/L", "10^9/L"),  # European giga-per-litre; "g/L" stays grams
        ("K/uL", "10^3/uL"),
        ("K/mm3", "10^3/mm3"),
        ("thou/uL", "10^3/uL"),
        ("x10³/µL", "10^3/uL"),
        ("M/uL", "10^6/uL"),
        ("/mm3", "/mm3"),
        ("/mm³", "/mm3"),
        ("cells/mm3", "/mm3"),
        ("cells/uL", "/uL"),
        ("%", "%"),
        ("percent", "%"),
        ("years", "years"),
        ("yrs", "years"),
        ("yo", "years"),
        ("y/o", "years"),
        ("year-old", "years"),
        ("years old", "years"),
        ("months", "months"),
        ("mos", "months"),
        ("mL/min/1.73m2", "mL/min/1.73m2"),
        ("mL/min/1.73 m2", "mL/min/1.73m2"),
        ("kg/m2", "kg/m2"),
        ("mm Hg", "mmHg"),
        ("U/L", "U/L"),
        ("IU/L", "IU/L"),
        ("mEq/L", "mEq/L"),
        ("mmol/mol", "mmol/mol"),
        ("degC", "°C"),
    ],
)
def test_normalise_unit(text: str, canonical: str) -> None:
    assert normalise_unit(text) == canonical
    assert normalise_unit(canonical) == canonical  # canonical spellings are fixed points
    assert is_known_unit(text)


@pytest.mark.parametrize(
    "text",
    [None, "", "   ", "note", "mg/dL mg/dL", "5 mg/dL", "10^9", "K", "in", "mg/", "//", "banana/L",
     "°C/min", "mg/10^3 L", "cells"],
)
def test_not_a_unit(text: str | None) -> None:
    assert normalise_unit(text) is None
    if text is not None:
        assert not is_known_unit(text)


# --- analytes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "aka", "analyte"),
    [
        ("creatinine", (), "creatinine"),
        ("serum creatinine", (), "creatinine"),
        ("highest creatinine", (), "creatinine"),
        ("creat", ("Cr", "serum creatinine"), "creatinine"),
        ("kidney function", ("Cr",), "creatinine"),
        ("creatinine clearance", (), "creatinine_clearance"),
        ("hemoglobin", (), "hemoglobin"),
        ("haemoglobin", (), "hemoglobin"),
        ("Hgb", (), "hemoglobin"),
        ("blood count", ("Hb",), "hemoglobin"),
        ("hemoglobin A1c", (), "hba1c"),
        ("glycated haemoglobin", (), "hba1c"),
        ("total bilirubin", (), "bilirubin"),
        ("glucose", (), "glucose"),
        ("blood sugar", (), "glucose"),
        ("platelets", (), "platelets"),
        ("platelet count", (), "platelets"),
        ("mean platelet volume", (), "mpv"),
        ("BUN", (), "bun"),
        ("LDL-C", (), "ldl"),
    ],
)
def test_analyte_of(phrase: str, aka: tuple[str, ...], analyte: str) -> None:
    assert analyte_of(phrase, aka) == analyte


@pytest.mark.parametrize(
    ("phrase", "aka"),
    [
        ("ejection murmur grade", ()),
        ("vitamin K", ()),  # a one-letter alias counts only as the whole text
        ("hemoglobin or glucose", ()),  # a tie is not resolved by guessing
        ("renal", ("creatinine", "urea")),
    ],
)
def test_analyte_unresolved(phrase: str, aka: tuple[str, ...]) -> None:
    assert analyte_of(phrase, aka) is None


# --- conversions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "frm", "to", "analyte", "expected", "tol"),
    [
        (106, "umol/L", "mg/dL", "creatinine", 1.2, 0.01),
        (1.2, "mg/dL", "umol/L", "creatinine", 106.1, 0.1),
        (0.106, "mmol/L", "mg/dL", "creatinine", 1.2, 0.01),
        (106, "mcmol/l", "mg/dl", "creatinine", 1.2, 0.01),
        (95, "g/L", "g/dL", "hemoglobin", 9.5, 1e-9),
        (95, "g/L", "g/dL", None, 9.5, 1e-9),  # same dimension: no analyte needed
        (6.2, "mmol/L", "g/dL", "hemoglobin", 9.99, 0.01),
        (10, "g/dL", "mmol/L", "hemoglobin", 6.206, 0.001),
        (5.5, "mmol/L", "mg/dL", "glucose", 99.1, 0.1),
        (17.1, "umol/L", "mg/dL", "bilirubin", 1.0, 0.001),
        (7.1, "mmol/L", "mg/dL", "bun", 19.9, 0.05),
        (5.0, "mmol/L", "mg/dL", "cholesterol", 193.3, 0.1),
        (2.5, "mmol/L", "mg/dL", "calcium", 10.02, 0.01),
        (5.0, "mEq/L", "mmol/L", "calcium", 2.5, 1e-9),
        (140, "mEq/L", "mmol/L", "sodium", 140, 1e-9),
        (1.5, "mg/dL", "g/L", None, 0.015, 1e-12),
        (150, "x10^9/L", "10^3/uL", "platelets", 150, 0),
        (150, "10*9/L", "10^3/uL", None, 150, 0),
        (150000, "/mm3", "10^3/uL", "platelets", 150, 0),
        (150000, "cells/uL", "10^3/uL", None, 150, 0),
        (150, "K/uL", "10^3/uL", "platelets", 150, 0),
        (150, "thou/uL", "10^9/L", None, 150, 0),
        (4.5, "M/uL", "10^12/L", None, 4.5, 0),
        (35, "percent", "%", None, 35, 0),
        (2, "years", "months", None, 24, 0),
        (30, "months", "years", None, 2.5, 0),
        (67, "yo", "years", None, 67, 0),
        (38.5, "°C", "°F", None, 101.3, 1e-9),
        (40, "IU/L", "U/L", None, 40, 0),
        (53, "mmol/mol", "%", "hba1c", 7.0, 0.01),
        (7.0, "%", "mmol/mol", "hba1c", 53.0, 0.1),
        (7.0, "%", "%", "hba1c", 7.0, 0),
        (1.4, None, "mg/dL", "creatinine", 1.4, 0),  # a missing unit is the declared unit
        (1.4, "", "mg/dL", "creatinine", 1.4, 0),
        (1.4, "  ", "mg/dL", None, 1.4, 0),
    ],
)
def test_convert(
    value: float, frm: str | None, to: str, analyte: str | None, expected: float, tol: float
) -> None:
    got = convert(value, frm, to, analyte)
    assert got is not None
    assert got == pytest.approx(expected, abs=tol)


@pytest.mark.parametrize(
    ("frm", "to", "analyte"),
    [
        ("umol/L", "mg/dL", None),  # molar -> mass needs the analyte's molar mass
        ("umol/L", "mg/dL", "platelets"),  # ... which platelets do not have
        ("mmol/L", "mg/dL", "no-such-analyte"),
        ("kg", "mg/dL", "creatinine"),
        ("note", "mg/dL", "creatinine"),
        ("mg/dL mg/dL", "mg/dL", None),
        ("%", "10^3/uL", "platelets"),
        ("years", "mg/dL", None),
        ("mg/dL", "kg", None),
        ("mg/dL", "", None),
        ("mg/dL", "junk", None),
        ("mEq/L", "mmol/L", "glucose"),  # no valence
    ],
)
def test_cannot_convert(frm: str, to: str, analyte: str | None) -> None:
    assert linear(frm, to, analyte) is None
    assert convert(1.0, frm, to, analyte) is None


def test_exact_factors_stay_exact() -> None:
    # a threshold `plt >= 150` must see 150, not 149.99999999999997
    assert linear("/mm3", "10^3/uL") == Linear(0.001, 0.0)
    assert linear("mg/dL", "mg/dL", "anything") == Linear(1.0, 0.0)


def test_hba1c_is_affine() -> None:
    lin = linear("%", "mmol/mol", "hba1c")
    assert lin is not None
    assert lin.factor == pytest.approx(10.929)
    assert lin.offset == pytest.approx(-10.929 * 2.15)


# --- user conversions from a .crit file -------------------------------------------

CREAT = Conversion(analyte="creat", from_unit="mg/dL", to_unit="umol/L", factor=88.42)


@pytest.mark.parametrize(
    ("value", "frm", "to", "analyte", "extra", "expected"),
    [
        # the user's factor wins over the molar-mass one (88.40)
        (1.0, "mg/dL", "umol/L", "creat", (CREAT,), 88.42),
        (88.42, "umol/L", "mg/dL", "creat", (CREAT,), 1.0),  # used backwards
        (0.08842, "mmol/L", "mg/dL", "creat", (CREAT,), 1.0),  # chained with mmol -> umol
        (1.0, "mg/dL", "umol/L", "creatinine", (CREAT,), 88.42),  # "creat" resolves to creatinine
        (1.0, "widgets", "mg/dL", None, (Conversion(analyte=None, from_unit="widgets",
                                                    to_unit="mg/dL", factor=3.0),), 3.0),
        (5.0, "mg/dL", "widgets", "glucose", (Conversion(analyte=None, from_unit="widgets",
                                                         to_unit="mg/dL", factor=2.0),), 2.5),
        (100.0, "°F", "°C", None, (Conversion(analyte=None, from_unit="°F", to_unit="°C",
                                              factor=0.5, offset=-10),), 40.0),
    ],
)
def test_extra_conversions(
    value: float,
    frm: str,
    to: str,
    analyte: str | None,
    extra: tuple[Conversion, ...],
    expected: float,
) -> None:
    got = convert(value, frm, to, analyte, extra)
    assert got is not None
    assert got == pytest.approx(expected, rel=1e-9)


def test_extra_for_one_analyte_only() -> None:
    # creatinine's conversion must not leak into glucose, nor apply when the analyte is unknown
    assert convert(1.0, "mg/dL", "umol/L", "glucose", [CREAT]) == pytest.approx(1 / 180.16 * 10_000)
    assert linear("mg/dL", "umol/L", None, [CREAT]) is None
    assert linear("widgets", "mg/dL", "glucose", [CREAT]) is None


@pytest.mark.parametrize("factor", [0.0, float("inf"), float("nan")])
def test_conversion_rejects_unusable_factor(factor: float) -> None:
    with pytest.raises(ValidationError):
        Conversion(analyte=None, from_unit="mg/dL", to_unit="g/L", factor=factor)


def test_a_temperature_never_bridges_through_a_molar_mass() -> None:
    # Found by the seeded fuzz: `hba1c > 5 °C` made pint raise on an offset unit instead of saying no.
    assert linear("°C", "%", "hba1c", ()) is None
    assert linear("mg/dL", "°F", "creatinine", ()) is None
