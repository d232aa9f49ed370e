"""Lab units: read the unit a note used, and convert values to a question's unit.

A numeric question declares its unit in the .crit file (``creat > 2.5 mg/dL``);
the model reports the unit it saw in the note, as free text ("umol/L",
"x10^9/L", "K/uL", "yrs"). This module does three things and nothing else:

1. ``normalise_unit`` spells a unit one canonical way ("mcmol/l" -> "umol/L",
   "×10⁹/L" -> "10^9/L", "K/uL" -> "10^3/uL", "yo" -> "years") or returns None
   when the text is not a unit. It is strict: text is read as ``part/part/...``
   where each part is an optional scale (10^N, a number such as 1.73, or K/M/G
   for thousand/million/giga in the numerator) and one known unit atom with an
   optional power ("mm3"). Anything else ("note", "mg/dL mg/dL", "") is None,
   never a guess.
2. ``analyte_of`` names the analyte a question asks about ("serum creatinine",
   aka "Cr" -> "creatinine"), because mass <-> molar conversions need its
   molar mass (creatinine umol/L -> mg/dL).
3. ``linear`` returns the map ``to = from * factor + offset`` between two units
   (for an analyte), or None when no conversion exists. A map, not a converted
   value, because the rules layer evaluates in DuckDB SQL: it computes one map
   per distinct (reported unit, declared unit, analyte) here and joins it.
   ``convert`` applies it to one value.

Arithmetic between units of one dimension (mg/dL <-> g/L, /mm3 <-> 10^3/uL,
years <-> months, degC <-> degF) is done by pint, in a private UnitRegistry
(never pint's global one, which other code may change). pint is maintained,
knows compound units and refuses conversions across dimensions, which is the
check we need; we did not adopt a UCUM library. The spelling layer above pint
is ours because notes use spellings no units library accepts ("10*9/L",
"K/uL", "yo") and because pint alone would accept too much ("in", "a", or
"mg/dL mg/dL" as mg**2/dL**2).

Choices a reader should know:

- A missing reported unit (None, "" or blank) is read as the declared unit:
  small models often omit the unit even when the note states it in the
  declared one. Callers that care can record that the unit was missing.
- The same canonical unit on both sides converts with factor 1 for any
  analyte, known or not.
- Mass <-> molar needs a known analyte with a molar mass; without one the
  answer is None (unit unknown), never an assumed analyte.
- mEq <-> mmol uses the ion's valence (sodium 1, calcium 2).
- HbA1c % (NGSP) <-> mmol/mol (IFCC) is affine: mmol/mol = 10.929 * (% - 2.15).
- Enzyme units: IU and U are the same unit (1 umol/min), as in lab reports.
- Factors and offsets that are short decimals up to float noise are snapped
  to them, so exact conversions stay exact (150000 /mm3 is 150 10^3/uL, not
  149.99999999999997, which a ``>= 150`` threshold would see).
- User conversions from a .crit file (``convert creat 1 mg/dL = 88.42 umol/L``)
  come as ``extra``, take precedence over the built-in table, work both ways,
  and chain with same-dimension steps (mmol/L -> umol/L -> user map -> mg/dL).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    import pint

__all__ = [
    "Conversion",
    "Linear",
    "analyte_of",
    "convert",
    "is_known_unit",
    "linear",
    "normalise_unit",
]


class Linear(NamedTuple):
    """A conversion ``to = from * factor + offset``."""

    factor: float
    offset: float

    def apply(self, value: float) -> float:
        return value * self.factor + self.offset

    def then(self, other: Linear) -> Linear:
        """This map followed by ``other``."""
        return Linear(self.factor * other.factor, self.offset * other.factor + other.offset)

    def inverse(self) -> Linear:
        return Linear(1.0 / self.factor, -self.offset / self.factor)


IDENTITY = Linear(1.0, 0.0)


class Conversion(BaseModel):
    """A user-declared conversion from a .crit file, e.g. ``convert creat 1 mg/dL = 88.42 umol/L``.

    ``to = from * factor + offset``. ``analyte`` is the name written in the file
    (a question name such as ``creat`` or an analyte such as ``creatinine``);
    None means the conversion holds for every analyte. Units need not be known
    to this module: a file may define a spelling we lack (``1 mg% = 1 mg/dL``).
    """

    model_config = ConfigDict(frozen=True)  # hashable, so linear() can cache on it

    analyte: str | None
    from_unit: str
    to_unit: str
    factor: float
    offset: float = 0.0

    @field_validator("factor")
    @classmethod
    def _factor_usable(cls, v: float) -> float:
        if v == 0 or not math.isfinite(v):
            raise ValueError("a conversion factor must be a finite, non-zero number")
        return v

    @field_validator("offset")
    @classmethod
    def _offset_finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("a conversion offset must be a finite number")
        return v


# --- the private registry -------------------------------------------------------

@functools.cache
def _registry() -> pint.UnitRegistry:
    """Our own pint registry, built on first use (about 0.6 s, so not at import:
    spelling checks in the language's checker never need it)."""
    import pint

    ureg = pint.UnitRegistry()
    # Lab reports use IU/L and U/L for the same enzyme activity (1 umol/min).
    ureg.define("international_unit = enzyme_unit = IU")
    # Equivalents get a dimension of their own: only an ion's valence links them to moles.
    ureg.define("equivalent = [equivalent] = Eq")
    # Clinical scores (CHADS2, NYHA class, GCS) are counts of points: dimensionless.
    ureg.define("score_point = [score]")
    return ureg


class _Atom(NamedTuple):
    canonical: str  # spelling in normalise_unit output
    pint_name: str


# Canonical atoms and the spellings (compared case-insensitively) that mean them.
# No two spellings here differ only by case, so case-insensitive lookup is safe;
# the case-sensitive scale words (K, M, G, T) are handled apart.
_ATOM_SPELLINGS: dict[_Atom, tuple[str, ...]] = {
    _Atom("kg", "kilogram"): ("kg", "kgs", "kilogram", "kilograms"),
    _Atom("g", "gram"): ("g", "gm", "gms", "gram", "grams", "gr"),
    _Atom("mg", "milligram"): ("mg", "mgs", "milligram", "milligrams"),
    _Atom("ug", "microgram"): ("ug", "mcg", "microgram", "micrograms"),
    _Atom("ng", "nanogram"): ("ng", "nanogram", "nanograms"),
    _Atom("pg", "picogram"): ("pg", "picogram", "picograms"),
    _Atom("L", "liter"): ("l", "liter", "liters", "litre", "litres", "ltr"),
    _Atom("dL", "deciliter"): ("dl", "deciliter", "decilitre"),
    _Atom("mL", "milliliter"): ("ml", "milliliter", "millilitre", "cc"),
    _Atom("uL", "microliter"): ("ul", "microliter", "microlitre"),
    _Atom("fL", "femtoliter"): ("fl", "femtoliter", "femtolitre"),
    _Atom("m", "meter"): ("m", "meter", "metre"),
    _Atom("cm", "centimeter"): ("cm", "centimeter", "centimetre"),
    _Atom("mm", "millimeter"): ("mm", "millimeter", "millimetre"),
    _Atom("mol", "mole"): ("mol", "mole", "moles"),
    _Atom("mmol", "millimole"): ("mmol", "millimole", "millimoles"),
    _Atom("umol", "micromole"): ("umol", "micromole", "micromoles"),
    _Atom("nmol", "nanomole"): ("nmol", "nanomole", "nanomoles"),
    _Atom("pmol", "picomole"): ("pmol", "picomole", "picomoles"),
    _Atom("Eq", "equivalent"): ("eq",),
    _Atom("mEq", "milliequivalent"): ("meq",),
    _Atom("U", "enzyme_unit"): ("u", "unit", "units"),
    _Atom("mU", "mU"): ("mu",),
    _Atom("IU", "international_unit"): ("iu",),
    _Atom("mIU", "mIU"): ("miu",),
    _Atom("uIU", "uIU"): ("uiu",),
    _Atom("ms", "millisecond"): ("ms", "msec", "msecs", "millisecond", "milliseconds"),  # QTc, PR intervals
    _Atom("s", "second"): ("s", "sec", "secs", "second", "seconds"),
    _Atom("min", "minute"): ("min", "mins", "minute", "minutes"),
    _Atom("h", "hour"): ("h", "hr", "hrs", "hour", "hours"),
    _Atom("days", "day"): ("d", "day", "days"),
    _Atom("weeks", "week"): ("wk", "wks", "week", "weeks"),
    _Atom("months", "month"): ("mo", "mos", "mth", "mths", "month", "months"),
    _Atom("years", "year"): ("y", "yr", "yrs", "year", "years"),
    _Atom("%", "percent"): ("%",),
    _Atom("points", "score_point"): ("point", "points", "pts", "score"),
    _Atom("mmHg", "millimeter_Hg"): ("mmhg",),
    _Atom("°C", "degree_Celsius"): ("°c", "degc", "celsius"),
    _Atom("°F", "degree_Fahrenheit"): ("°f", "degf", "fahrenheit"),
    _Atom("kelvin", "kelvin"): ("kelvin", "kelvins"),  # "K" alone is a thousand: the reader says when it is kelvin
    _Atom("lb", "pound"): ("lb", "lbs", "pound", "pounds"),
    _Atom("oz", "ounce"): ("oz", "ounce", "ounces"),
    _Atom("in", "inch"): ("inch", "inches"),  # "in" alone is a word
    _Atom("ft", "foot"): ("ft", "foot", "feet"),
}
_ATOMS: dict[str, _Atom] = {
    spelling: atom for atom, spellings in _ATOM_SPELLINGS.items() for spelling in spellings
}
_OFFSET_ATOMS = {"°C", "°F", "kelvin"}  # temperatures: only alone, never in a compound

# Words a note puts before a count's volume ("cells/uL", "10^9 cells/L"): dropped.
# Things counted per unit of time or volume: "beats/min" is a rate of 1/min, as "cells/uL" is a count per uL.
_COUNT_WORDS = {"cell", "cells", "count", "counts", "#", "beat", "beats", "breath", "breaths"}
# Scale words, case-sensitive ("G/L" is 10^9/L, "g/L" is grams), numerator only.
_SCALE_WORDS = {"K": 3, "k": 3, "thou": 3, "thousand": 3, "M": 6, "mil": 6, "million": 6,
                "G": 9, "T": 12}

# Whole-text spellings, compared after lower-casing and collapsing blanks.
_WHOLE_ALIASES = {
    "yo": "years", "y/o": "years", "y.o.": "years", "y.o": "years", "year-old": "years",
    "years-old": "years", "year old": "years", "years old": "years", "yr old": "years",
    "yrs old": "years", "years of age": "years",
    "percent": "%", "per cent": "%", "pct": "%",
    "degrees fahrenheit": "°F", "degrees f": "°F", "deg f": "°F", "° f": "°F",
    "degrees celsius": "°C", "degrees centigrade": "°C", "degrees c": "°C", "deg c": "°C", "° c": "°C",
    "mm hg": "mmHg", "mg%": "mg/dL", "bpm": "/min", "beats per minute": "/min", "breaths per minute": "/min",
    "per minute": "/min", "per min": "/min", "a minute": "/min", "mg percent": "mg/dL",
}

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_SUPER_TEN_RE = re.compile(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹]+)")
_SCALE_RE = re.compile(r"(?:[x×*]\s*)?10\s*(?:\^|\*\*|\*|e)\s*\+?(\d{1,2})", re.IGNORECASE)
_MICRO_RE = re.compile(r"(?<![A-Za-z])mc(?=[a-z])", re.IGNORECASE)
_PART_RE = re.compile(
    r"""^(?:(?P<scale>10\^\d{1,2}|\d+(?:\.\d+)?)\s*)?   # 10^9, or a number such as 1.73
        (?P<atom>[^\W\d_]+|%|°[CcFf]|\#)?                 # letters, %, °C, or #
        (?:\^?(?P<power>[23]))?$                          # mm3, m^2
    """,
    re.VERBOSE,
)


class _Part(NamedTuple):
    scale: str  # "" | "10^9" | "1.73"
    atom: _Atom | None
    power: int


def _parse(text: str | None) -> tuple[_Part, ...] | None:
    """Read a unit into parts (numerator first, then each divisor); None if not a unit."""
    if text is None:
        return None
    # Superscript powers of ten first: NFKC would turn "10⁹" into "109".
    s = _SUPER_TEN_RE.sub(lambda m: "10^" + m.group(1).translate(_SUPERSCRIPTS), text)
    s = unicodedata.normalize("NFKC", s).strip()  # ³ -> 3, µ -> μ
    s = re.sub(r"\s+", " ", s)
    if not s:
        return None
    s = _WHOLE_ALIASES.get(s.lower(), s)
    s = s.replace("μ", "u")
    s = _MICRO_RE.sub("u", s)  # mcg, mcmol, mcL
    s = _SCALE_RE.sub(lambda m: f"10^{int(m.group(1))}", s)
    s = re.sub(r"\s+per\s+", "/", s, flags=re.IGNORECASE)
    s = re.sub(r"\s*/\s*", "/", s)

    raw_parts = s.split("/")
    parts: list[_Part] = []
    for i, raw in enumerate(raw_parts):
        part = _read_part(raw, numerator=(i == 0), divided=len(raw_parts) > 1)
        if part is None:
            return None
        parts.append(part)
    if len(parts) == 1 and parts[0].atom is None:
        return None  # a bare scale ("10^9") or nothing at all
    atoms = [p.atom.canonical for p in parts if p.atom]
    if any(a in _OFFSET_ATOMS for a in atoms) and len(parts) > 1:
        return None  # °C/min and the like: offset units do not compound
    if not all(_scale_ok(p.scale) for p in parts):
        return None  # "0uL", "10^999/uL": a scale of zero or beyond a float is no unit
    return tuple(parts)


def _scale_ok(scale: str) -> bool:
    """A part's scale ("", "10^3", "1.73") is a positive, finite number of sane size."""
    try:
        value = 10.0 ** int(scale[3:]) if scale.startswith("10^") else float(scale or 1)
    except (OverflowError, ValueError):
        return False
    return math.isfinite(value) and 1e-30 < value < 1e30


def _read_part(raw: str, numerator: bool, divided: bool) -> _Part | None:
    if numerator and raw in ("", "1"):
        return _Part("", None, 1) if divided else None
    if numerator and divided and raw in _SCALE_WORDS:
        return _Part(f"10^{_SCALE_WORDS[raw]}", None, 1)
    m = _PART_RE.match(raw)
    if m is None:
        return None
    scale, word, power = m.group("scale") or "", m.group("atom"), int(m.group("power") or 1)
    if word is not None and word.lower() in _COUNT_WORDS:
        if not numerator or power != 1:
            return None
        return _Part(scale, None, 1) if (scale or divided) else None
    if word is None:
        # A bare number is a unit only as the numerator's 10^N ("10^9/L").
        bare_ten = numerator and divided and scale.startswith("10^")
        return _Part(scale, None, 1) if bare_ten else None
    atom = _ATOMS.get(word.lower())
    # A scale before an atom: 10^N only in the numerator ("10^9 cells" aside, rare),
    # a plain number only in a divisor ("mL/min/1.73m2"); "5 mg" is a value, not a unit.
    if atom is None or (scale and (numerator != scale.startswith("10^"))):
        return None
    return _Part(scale, atom, power)


def _format(parts: tuple[_Part, ...]) -> str:
    out = []
    for part in parts:
        text = part.atom.canonical if part.atom else ""
        if part.power != 1:
            text += str(part.power)
        if part.scale.startswith("10^"):
            text = f"{part.scale} {text}" if text else part.scale
        elif part.scale:
            text = part.scale + text  # 1.73m2
        out.append(text)
    return "/".join(out)


@functools.lru_cache(maxsize=4096)
def normalise_unit(text: str | None) -> str | None:
    """The canonical spelling of a unit ("mcmol/l" -> "umol/L"), or None if ``text`` is not one."""
    parts = _parse(text)
    return _format(parts) if parts else None


def is_known_unit(text: str) -> bool:
    """True when ``text`` is a unit this module can read."""
    return normalise_unit(text) is not None


def has_no_dimension(text: str) -> bool:
    """True for a unit a bare number cannot be mistaken in: % (and other ratios) or points of a score.
    mg/dL, kg or °C have a dimension: "weight 180" might be pounds."""
    parts = _parse(_spelling(text) or "")
    if not parts:
        return False
    dimensionality = dict(_quantity(parts)[1].dimensionality)
    return dimensionality in ({}, {"[score]": 1})


@functools.lru_cache(maxsize=4096)
def names_a_unit(text: str) -> bool:
    """True when ``text`` names a unit of measure, whether or not crit can convert it ("stone", "pint",
    "grain", "mg/kg/min"): a word a note writes after a number as its unit, never to be read as the
    question's unit. Ordinary words ("normal", "baseline") are not units."""
    if is_known_unit(text) or any(ch in text for ch in "/^°µ"):
        return True
    try:
        return text in _registry()
    except Exception:  # pint's parser on odd text: not a unit it knows
        return False


# --- analytes --------------------------------------------------------------------


class _Analyte(NamedTuple):
    molar_mass: float | None  # g/mol, for mass <-> molar
    valence: int | None  # charge, for mEq <-> mmol
    names: tuple[str, ...]


# Molar masses as used by clinical labs' conversion factors. Hemoglobin is per
# monomer (16114.5 g/mol: 1 mmol/L = 1.6114 g/dL). BUN is reported as urea
# nitrogen: one mmol of urea carries 28.014 mg of nitrogen (1 mmol/L = 2.8 mg/dL).
_ANALYTES: dict[str, _Analyte] = {
    "creatinine": _Analyte(113.12, None, ("creatinine", "creat", "cr", "scr", "serum creatinine")),
    "creatinine_clearance": _Analyte(None, None, ("creatinine clearance", "crcl")),
    "egfr": _Analyte(None, None, ("egfr", "gfr", "estimated gfr", "glomerular filtration rate")),
    "glucose": _Analyte(180.16, None, ("glucose", "blood glucose", "blood sugar", "sugar", "bg",
                                       "fbg", "fpg", "fasting glucose", "plasma glucose")),
    "hba1c": _Analyte(None, None, ("hba1c", "a1c", "hgba1c", "hemoglobin a1c", "haemoglobin a1c",
                                   "glycated hemoglobin", "glycated haemoglobin",
                                   "glycosylated hemoglobin", "glycohemoglobin")),
    "hemoglobin": _Analyte(16114.5, None, ("hemoglobin", "haemoglobin", "hb", "hgb")),
    "bilirubin": _Analyte(584.66, None, ("bilirubin", "total bilirubin", "tbili", "t bili",
                                         "bili")),
    "bun": _Analyte(28.014, None, ("bun", "blood urea nitrogen", "urea nitrogen")),
    "urea": _Analyte(60.06, None, ("urea", "serum urea")),
    "cholesterol": _Analyte(386.65, None, ("cholesterol", "total cholesterol", "tc")),
    "ldl": _Analyte(386.65, None, ("ldl", "ldl c", "ldl cholesterol")),
    "hdl": _Analyte(386.65, None, ("hdl", "hdl c", "hdl cholesterol")),
    "triglycerides": _Analyte(885.7, None, ("triglycerides", "triglyceride", "tg", "trigs")),
    "calcium": _Analyte(40.08, 2, ("calcium", "ca", "serum calcium", "total calcium")),
    "magnesium": _Analyte(24.305, 2, ("magnesium",)),
    "phosphate": _Analyte(30.97, None, ("phosphate", "phosphorus", "phos")),
    "uric_acid": _Analyte(168.11, None, ("uric acid", "urate")),
    "sodium": _Analyte(22.99, 1, ("sodium", "na")),
    "potassium": _Analyte(39.098, 1, ("potassium", "k")),
    "chloride": _Analyte(35.45, 1, ("chloride", "cl")),
    "bicarbonate": _Analyte(61.02, 1, ("bicarbonate", "bicarb", "hco3")),
    "albumin": _Analyte(None, None, ("albumin", "alb")),
    "platelets": _Analyte(None, None, ("platelets", "platelet", "platelet count", "plt", "plts")),
    "mpv": _Analyte(None, None, ("mean platelet volume", "mpv")),
    "wbc": _Analyte(None, None, ("wbc", "white blood cells", "white blood cell count",
                                 "white cell count", "leukocytes", "leukocyte count")),
    "neutrophils": _Analyte(None, None, ("neutrophils", "anc", "absolute neutrophil count",
                                         "neutrophil count")),
    "lvef": _Analyte(None, None, ("lvef", "ejection fraction", "ef",
                                  "left ventricular ejection fraction")),
    "age": _Analyte(None, None, ("age",)),
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


_NAME_WORDS: list[tuple[tuple[str, ...], str]] = sorted(
    ((_words(name), key) for key, a in _ANALYTES.items() for name in a.names),
    key=lambda item: -len(item[0]),
)


@functools.lru_cache(maxsize=4096)  # a question's phrase is matched once per value read: the report reads thousands
def _match(text: str) -> str | None:
    """The analyte whose longest name occurs in ``text`` as whole words; None if none or a tie.

    Names of one or two letters ("K", "Hb", "Cr") count only as the whole text:
    inside a phrase they are too often something else ("vitamin K").
    """
    words = _words(text)
    found: set[str] = set()
    best = 0
    for name, key in _NAME_WORDS:  # longest names first
        if len(name) < best:
            break
        n = len(name)
        if n == 1 and len(name[0]) <= 2 and words != name:
            continue
        if any(words[i : i + n] == name for i in range(len(words) - n + 1)):
            found.add(key)
            best = n
    return found.pop() if len(found) == 1 else None


def analyte_of(phrase: str, aka: Sequence[str] = ()) -> str | None:
    """The canonical analyte a question asks about, from its phrase, else its aliases.

    The longest known name found as whole words wins ("hemoglobin A1c" is hba1c,
    "creatinine clearance" is not creatinine). None when nothing matches or
    when names of different analytes tie (never a guess).
    """
    found = _match(phrase)
    if found:
        return found
    from_aka = {a for a in map(_match, aka) if a}
    return from_aka.pop() if len(from_aka) == 1 else None


# --- conversion ------------------------------------------------------------------


def _quantity(parts: tuple[_Part, ...]) -> tuple[float, pint.Unit]:
    """A parsed unit as (scale, pint unit): 10^9/L is (1e9, 1/liter)."""
    ureg = _registry()
    scale = 1.0
    unit = ureg.Unit("")
    for i, part in enumerate(parts):
        if part.scale.startswith("10^"):
            s = float(10 ** int(part.scale[3:]))
        else:
            s = float(part.scale or 1)
        u = ureg.Unit(part.atom.pint_name) ** part.power if part.atom else ureg.Unit("")
        if i == 0:
            scale, unit = s, u
        else:
            scale, unit = scale / s, unit / u
    return scale, unit


def _round(x: float) -> float:
    """Snap float noise to the short decimal it stands for (1.0000000000000002 -> 1.0).

    Only when a number of at most 9 significant digits lies within 1e-12 of ``x``
    (relative); other factors (1/12 for months -> years) are kept as they are.
    """
    if x == 0 or not math.isfinite(x):
        return x
    for digits in range(1, 10):
        short = float(f"{x:.{digits}g}")
        if abs(short - x) <= 1e-12 * abs(x):
            return short
    return x


def _same_dimension(frm: str, to: str) -> Linear | None:
    """Conversion needing no analyte: pint between units of one dimension."""
    if frm == to:
        return IDENTITY
    pf, pt = _parse(frm), _parse(to)
    if pf is None or pt is None:
        return None
    ureg = _registry()
    (sf, uf), (st, ut) = _quantity(pf), _quantity(pt)
    if uf.dimensionality != ut.dimensionality:
        return None
    # Two points give the map, offsets included (degC -> degF).
    at0 = ureg.Quantity(0.0, uf).to(ut).magnitude / st
    at1 = ureg.Quantity(sf, uf).to(ut).magnitude / st
    return Linear(_round(at1 - at0), _round(at0))


def _bridged(frm: str, to: str, analyte: str) -> Linear | None:
    """Mass <-> molar <-> equivalents for an analyte with a molar mass or valence."""
    info = _ANALYTES.get(analyte)
    pf, pt = _parse(frm), _parse(to)
    if info is None or pf is None or pt is None:
        return None
    ureg = _registry()
    (sf, uf), (st, ut) = _quantity(pf), _quantity(pt)
    from pint.errors import OffsetUnitCalculusError  # pint loads lazily (see _registry)

    try:
        ratio = ureg.Quantity(sf, uf) / ureg.Quantity(st, ut)
    except OffsetUnitCalculusError:
        return None  # a temperature (°C, °F) never converts through a molar mass
    bridges = []
    g_per_mol = ureg.gram / ureg.mole
    eq_per_mol = ureg.equivalent / ureg.mole
    if info.molar_mass:
        bridges += [info.molar_mass * g_per_mol, 1 / (info.molar_mass * g_per_mol)]
    if info.valence:
        bridges += [info.valence * eq_per_mol, 1 / (info.valence * eq_per_mol)]
    if info.molar_mass and info.valence:
        g_per_eq = info.molar_mass / info.valence * ureg.gram / ureg.equivalent
        bridges += [g_per_eq, 1 / g_per_eq]
    for bridge in bridges:
        q = ratio * bridge
        if q.dimensionless:
            return Linear(_round(q.to("dimensionless").magnitude), 0.0)
    return None


# IFCC mmol/mol = 10.929 * (NGSP % - 2.15)
_HBA1C_PERCENT_TO_MMOL_MOL = Linear(10.929, -10.929 * 2.15)


def _builtin(frm: str, to: str, analyte: str | None) -> Linear | None:
    if analyte == "hba1c" and {frm, to} == {"%", "mmol/mol"}:
        lin = _HBA1C_PERCENT_TO_MMOL_MOL
        return lin if frm == "%" else lin.inverse()
    found = _same_dimension(frm, to)
    if found is None and analyte is not None:
        found = _bridged(frm, to, analyte)
    return found


def _spelling(text: str) -> str:
    """A unit's canonical spelling, or its stripped text when this module does not know it."""
    return normalise_unit(text) or re.sub(r"\s+", " ", text.strip())


def _applies(conv: Conversion, analyte: str | None) -> bool:
    if conv.analyte is None:
        return True
    if analyte is None:
        return False
    return conv.analyte.strip().lower() == analyte.lower() or analyte_of(conv.analyte) == analyte


def _via_extra(
    frm: str, to: str, analyte: str | None, extra: tuple[Conversion, ...]
) -> Linear | None:
    """A user conversion, used either way, with same-dimension steps before and after."""
    for conv in extra:
        if not _applies(conv, analyte):
            continue
        lin = Linear(conv.factor, conv.offset)
        a, b = _spelling(conv.from_unit), _spelling(conv.to_unit)
        for start, end, step in ((a, b, lin), (b, a, lin.inverse())):
            before, after = _same_dimension(frm, start), _same_dimension(end, to)
            if before is not None and after is not None:
                return before.then(step).then(after)
    return None


@functools.lru_cache(maxsize=4096)
def _linear_cached(
    frm: str, to: str, analyte: str | None, extra: tuple[Conversion, ...]
) -> Linear | None:
    found = _via_extra(frm, to, analyte, extra) if extra else None
    if found is None and normalise_unit(frm) and normalise_unit(to):
        found = _builtin(frm, to, analyte)
    if found is None:
        return None
    return Linear(_round(found.factor), _round(found.offset))


def linear(
    from_unit: str | None,
    to_unit: str,
    analyte: str | None = None,
    extra: Sequence[Conversion] = (),
) -> Linear | None:
    """The map ``to = from * factor + offset`` from a reported unit to a declared one.

    ``analyte`` is a canonical analyte (see ``analyte_of``), needed for mass <->
    molar and HbA1c conversions. ``extra`` holds the .crit file's own
    conversions, tried first. A missing ``from_unit`` (None or blank) is taken
    to be ``to_unit``. Returns None when the conversion is impossible or
    either unit is unreadable: the caller then treats the value as unknown
    with reason ``unit``.
    """
    if to_unit is None:
        return None
    if from_unit is None or not from_unit.strip():
        from_unit = to_unit
    frm, to = _spelling(from_unit), _spelling(to_unit)
    if not frm or not to:
        return None
    return _linear_cached(frm, to, analyte, tuple(extra))


def convert(
    value: float,
    from_unit: str | None,
    to_unit: str,
    analyte: str | None = None,
    extra: Sequence[Conversion] = (),
) -> float | None:
    """``value`` in ``from_unit`` expressed in ``to_unit``; None when it cannot (see ``linear``)."""
    lin = linear(from_unit, to_unit, analyte, extra)
    return None if lin is None else lin.apply(value)


# ---- time, for windows ---------------------------------------------------------------

TimeUnit = Literal["day", "week", "month", "year"]

_TIME_UNITS: dict[str, TimeUnit] = {
    **dict.fromkeys(("d", "day", "days"), "day"),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "week"),
    **dict.fromkeys(("mo", "mos", "mon", "month", "months"), "month"),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), "year"),
}


def time_unit(text: str | None) -> TimeUnit | None:
    """The calendar unit a window is written in (`6 months`, `30 d`, `1 yr`), None when it is not one."""
    return _TIME_UNITS.get((text or "").strip().lower())
