"""The programmatic teacher: synthetic clinical notes whose answers are known by construction.

For the questions of a `.crit` file it writes notes that mention some of them, and for
every question it mentioned, a pair with the answer the construction implies:

- boolean "present": a statement about the patient ("h/o afib", "Pt w/ known DM2.");
- boolean "absent": a denial ("denies CP", "No h/o TIA.", "negative for diabetes");
- na-boolean: mentions that are not about the patient, or not an assertion: family history
  ("Mother w/ diabetes."), hypotheticals ("r/o stroke", "return if any bleeding");
- numeric: one or several readings of a lab with units, dates, reference ranges and other
  labs around it; the answer is the reading the question's order picks (highest, lowest,
  first, last) as written, with its unit as written. A range ("EF 60-65%", "creatinine 1.2
  to 1.4 mg/dL") is two readings of one sentence, so the lowest LVEF is its low end (the gold
  set's reading, tests/gold/README.md); ranges are written only for highest/lowest questions,
  where that reading is clear;
- na-numeric: the analyte named with no value ("creatinine pending", "will check Hgb").

The engine only asks a model about questions whose terms appear in a note (the gate), so
every pair here has a mention: the NA types are the hard ones, a term in the note that
still does not answer the question. Notes are messy on purpose (SynGP500): telegraphic
lines, abbreviations, typos in the surrounding text, redaction tags like `[**3-22**]`,
several readings of one lab, ranges ("EF 60-65%") and facts that are absent.

Two sources of text: notes written whole from section templates, and real notes (an
MTSamples file) into which the mentions are inserted at sentence ends, only for questions
the real note is lexically silent about (no passage), so the rest is real text.

A pair's label is right by construction only if the engine reads exactly the sentences
written for it: a pair whose question finds any other passage in the note is not written
(counted as `other_passage`). Everything is seeded: the same seed writes the same notes.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ConfigDict, Field

from crit.engine.options import CommandOptions
from crit.engine.reading.passages import find_passages, question_terms, term_regex
from crit.engine.reading.reader import CURRENT_STATE
from crit.grammar.questions import SEX_PHRASE, Question
from crit.trainer.synth import SynthSummary, answer_text, note_pairs

# 2: ranges ("EF 60-65%") as labelled readings.
# 3: the readings the rules are measured weakest at (benchmarks/RESULTS.md, dev trials): a drug or state that
#    stopped, counselling and consent lines, other people than relatives, a goal beside a value, prose values.
GENERATOR_VERSION = "crit-gen-3"

Mention = Literal["present", "absent", "stopped", "family", "hypothetical", "value", "goal", "range", "pending"]

# ---- what a mention says ------------------------------------------------------------------
# {t} is one of the question's terms as the .crit file writes it (phrase part or aka).
PRESENT = [
    "h/o {t}.", "Hx significant for {t}.", "Pt w/ known {t}, followed by PCP.", "PMH: {t}.",
    "Known {t} dx'd [**2019**].", "+{t}.", "{T}, stable on current regimen.", "Long-standing {t}.",
    "Pt has {t}.", "Assessment: {t}.", "Significant for {t} per old records.", "Hx of {t} x 5 yrs.",
    "{T} - continue home meds.", "Dx: {t}.", "Admitted with {t}.", "{T} noted on prior admission [**3-22**].",
]
ABSENT = [
    "Denies {t}.", "No h/o {t}.", "Negative for {t}.", "No {t}.", "Pt denies any {t}.",
    "{T}: none.", "No evidence of {t}.", "Without {t}.", "No prior {t}.", "ROS neg for {t}.",
    "Never had {t}.", "{T} ruled out on prior workup.", "No known {t}.", "Free of {t}.",
]
FAMILY = [
    "Mother w/ {t}.", "FHx: father - {t}.", "Family history of {t}.", "Brother had {t}.",
    "Sister with {t} at age 50.", "Mother and maternal aunt w/ {t}.", "Father died of {t}.",
    "Grandmother with {t}.",
    # Not a relative, still not the patient.
    "His wife has {t}.", "Roommate recently dx'd with {t}.", "Husband w/ {t}, pt is his caregiver.",
]
HYPOTHETICAL = [
    "R/o {t}.", "Rule out {t}.", "Return to ED if signs of {t}.", "Pt educated on warning signs of {t}.",
    "Will evaluate for {t} if symptoms recur.", "Screening for {t} to be arranged.",
    "Discussed risk of {t} with pt.", "Call if any {t}.",
    # Counselling, consent and teaching: the finding is named, nothing is said of the patient.
    "Risks including {t} were explained, consent signed.", "Pt given handout on {t}.", "Counseled regarding {t}.",
    "Educated about {t} and when to seek care.",
]
PENDING = [
    "{T} pending.", "Will check {t} in AM.", "{T} not done.", "F/u {t} at next visit.", "{T}: to be drawn.",
    "Repeat {t} ordered.", "Awaiting {t}.", "{T} was not obtained.",
]
# Questions about a current state, a plan or a drug read other words than a condition does.
CURRENT = ["Pt has {t}.", "Assessment: {t}.", "Admitted with {t}.", "+{t}.", "Currently w/ {t}.", "Dx: {t}.",
           "{T} - ongoing, will monitor.", "Active problem: {t}."]
PLANNED = ["Scheduled for {t}.", "Plan: {t} next month.", "Referred to EP for {t}.", "{T} planned for [**4-12**].",
           "Pt consented for {t}."]
PLANNED_ABSENT = ["No plans for {t}.", "{T} not planned at this time.", "Pt declined {t}.", "Not a candidate for {t}."]
PLANNED_HYPOTHETICAL = ["Will discuss {t} if symptoms persist.", "{T} may be considered in future.",
                        "Pt asked about {t}, info given."]
ON_DRUG = ["On {t}.", "Takes {t} daily.", "Continue {t}.", "Meds: {t}, metoprolol.", "Pt remains on {t}."]
OFF_DRUG = ["Not on {t}.", "No {t}.", "Pt not taking {t}.", "{T}: none.", "Never on {t}.", "Did not give {t} today."]
DRUG_HYPOTHETICAL = ["Consider starting {t}.", "Discussed risks and benefits of {t}.", "May need {t} in future.",
                     "Hold {t} if bleeding occurs.", "Pt asked about {t}; info given."]
# A drug or state that has stopped: absent for a question on a current therapy or state, as the reader reads
# it (crit.engine.reading.reader); written only for phrases that say "current" (asks_current).
STOPPED = ["Stopped {t} [**2-14**].", "{T} discontinued due to GI upset.", "Was on {t} until last yr, now off.",
           "No longer taking {t}.", "{T} held since admission, not restarted.", "Pt self-discontinued {t} 3 mo ago."]
RESOLVED = ["{T} resolved [**2019**].", "Hx of {t}, now resolved.", "{T}, in remission, no longer active."]
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "condition": {"present": PRESENT, "absent": ABSENT, "family": FAMILY, "hypothetical": HYPOTHETICAL},
    "current": {"present": CURRENT, "absent": ABSENT, "family": FAMILY, "hypothetical": HYPOTHETICAL},
    "planned": {"present": PLANNED, "absent": PLANNED_ABSENT, "hypothetical": PLANNED_HYPOTHETICAL},
    "drug": {"present": ON_DRUG, "absent": OFF_DRUG, "hypothetical": DRUG_HYPOTHETICAL},
}


def asks_current(q: Question) -> bool:
    """Whether the phrase asks for a current state ("current insulin therapy", "active bleeding"), by the
    reader's own words. The reader also reads every therapy question as current; stopped mentions are
    written only for these phrases, where both readings agree."""
    return bool(CURRENT_STATE.search(q.phrase))


def flavour(q: Question) -> str:
    """Which templates fit a boolean question: a drug, a plan, a current state or a condition."""
    words = set(re.findall(r"[a-z]+", q.phrase.lower()))
    if words & {"therapy", "treatment", "medication"}:
        return "drug"
    if "planned" in words:
        return "planned"
    if words & {"active", "current", "currently", "ongoing"}:
        return "current"
    return "condition"


# One reading; {v} a number, {u} the unit as written (may be empty), {d} a date.
READING = [
    "{T} {v}{u}.", "{T}: {v}{u}.", "{T} {v}{u} on {d}.", "Labs {d}: {T} {v}{u}.", "{T} of {v}{u} noted.",
    "{T} {v}{u} (ref {lo}-{hi}).", "Labs: Na 138, K 4.1, {t} {v}{u}, BUN 18.", "{T} was {v}{u} at last check.",
    "Her {t} this morning was {v}{u}.", "His last {t}, drawn {d}, is {v}{u}.", "{T} has been running {v}{u}.",
]
# Two readings in one sentence: {v1} earlier, {v2} later.
TWO_READINGS = [
    "{T} {v1}{u} -> {v2}{u}.", "{T} {v1}{u} on {d1}, {v2}{u} on {d2}.", "{T} went from {v1} to {v2}{u}.",
    "{T} trending: {v1}, then {v2}{u}.",
]
# One reading with a goal or target beside it: {g} is never the patient's value.
GOAL = ["{T} {v}{u}, goal <{g}.", "{T} {v}{u} (target <{g}).", "Last {t} drawn at end of {d} is {v}{u}; goal <{g}.",
        "{T} today {v}{u}, goal <{g}.", "{T} {v}{u}, above goal of {g}."]
# A range: {v1} the low end, {v2} the high end.
RANGE = ["{T} {v1}-{v2}{u}.", "{T} estimated at {v1}-{v2}{u}.", "{T} {v1} to {v2}{u}.",
         "{T} in the range of {v1}-{v2}{u}.", "{T} {v1}-{v2}{u} on {d1}."]
AGE = ["{v} y/o {sex} presents for f/u.", "{v}-year-old {sex} with the following.", "Pt is a {v} yo {sex}.",
       "{v} YO {sex}, here w/ family.", "This is a {v}-year-old {sex}."]

# ---- the text around them -----------------------------------------------------------------
SECTIONS = ["CHIEF COMPLAINT", "HPI", "PMH", "MEDS", "ALLERGIES", "FAMILY HISTORY", "SOCIAL HISTORY", "ROS",
            "PHYSICAL EXAM", "LABS", "ASSESSMENT AND PLAN"]
FILLER: dict[str, list[str]] = {
    "CHIEF COMPLAINT": ["SOB x 3 days.", "F/u visit.", "Cough and fever.", "Knee pain.", "Dizziness since [**3-22**].",
                        "Routine check-up.", "Fatigue, poor appetite."],
    "HPI": ["Pt seen today accompanied by daughter.", "Symptoms started 3 days ago, gradually worse.",
            "Pt reports good adherence to meds.", "Was seen at [**Hospital1 18**] last month.",
            "Presented to clinic w/ worsening fatigue.", "Walks 2 blocks before stopping to rest.",
            "Tolerating PO, no N/V.", "Last visit [**2-14**], no changes made."],
    "PMH": ["Appendectomy remote.", "GERD.", "Osteoarthritis of knees.", "Hyperlipidemia.", "BPH.",
            "s/p cholecystectomy [**2015**].", "Gout, last flare 2 yrs ago."],
    "MEDS": ["Metoprolol 25 mg PO BID.", "Lisinopril 10 mg daily.", "Atorvastatin 40 mg qhs.",
             "Omeprazole 20 mg daily.", "Tylenol PRN.", "Furosemide 40 mg PO daily.", "MVI daily."],
    "ALLERGIES": ["NKDA.", "PCN (rash).", "Sulfa - hives.", "No known drug allergies."],
    "FAMILY HISTORY": ["Noncontributory.", "Father with CAD in his 60s.", "Mother alive and well at 80.",
                       "Siblings healthy."],
    "SOCIAL HISTORY": ["Lives w/ wife.", "Retired teacher.", "Former smoker, quit [**2010**].",
                       "Works as an electrician.", "Independent in ADLs."],
    "ROS": ["No fevers or chills.", "No chest pain.", "No abd pain.", "+ fatigue.", "No dysuria.",
            "Otherwise negative x 10 systems."],
    "PHYSICAL EXAM": ["BP 132/78, HR 72, RR 16, T 98.6.", "Gen: NAD, A&Ox3.", "CV: RRR, no m/r/g.",
                      "Lungs: CTAB.", "Abd: soft, NT/ND.", "Ext: no edema.", "Neuro: grossly intact.",
                      "Echo [**5-3**]: EF 60-65%, mild LVH."],
    "LABS": ["Na 139, K 4.2, Cl 101, CO2 25.", "WBC 7.2.", "TSH 2.1.", "INR 1.1.", "Mg 2.0, Phos 3.4.",
             "UA negative."],
    "ASSESSMENT AND PLAN": ["Continue current meds.", "RTC in 3 months.", "Labs at next visit.",
                            "Discussed diet and exercise.", "Pt agrees with plan.", "PT referral placed."],
}
# Where a mention of each kind goes in a note written whole.
HOME: dict[Mention, tuple[str, ...]] = {
    "present": ("PMH", "HPI", "ASSESSMENT AND PLAN"),
    "absent": ("ROS", "HPI", "PMH"),
    "family": ("FAMILY HISTORY",),
    "stopped": ("MEDS", "HPI", "PMH"),
    "hypothetical": ("ASSESSMENT AND PLAN", "HPI"),
    "value": ("LABS", "PHYSICAL EXAM"),
    "goal": ("LABS", "ASSESSMENT AND PLAN"),
    "range": ("LABS", "PHYSICAL EXAM"),
    "pending": ("LABS", "ASSESSMENT AND PLAN"),
}

# Plausible values per declared unit: (low, high, decimals), and ways of writing the unit.
VALUES: dict[str, tuple[float, float, int]] = {
    "mg/dL": (0.3, 9.0, 1), "g/dL": (6.0, 17.5, 1), "U/L": (8, 320, 0), "%": (15, 75, 0), "10^3/uL": (40, 450, 0),
    "points": (0, 6, 0), "years": (19, 94, 0), "mmHg": (80, 200, 0), "kg": (40, 140, 0),
    "mmol/L": (2.5, 6.5, 1), "ratio": (0.9, 4.5, 1), "pg/mL": (20, 2500, 0), "ng/mL": (5, 600, 0),
    "mL/min/1.73m2": (8, 110, 0),
}
# Where one unit covers analytes of other sizes (a percent of HbA1c is not an ejection fraction's).
VALUES_BY_PHRASE: dict[str, tuple[float, float, int]] = {
    "hemoglobin A1c": (5.0, 14.0, 1), "white blood cell count": (1.5, 25.0, 1),
}
UNIT_SPELLINGS: dict[str, list[str]] = {
    "mg/dL": ["mg/dL", "mg/dl", ""], "g/dL": ["g/dL", "g/dl", ""], "U/L": ["U/L", "IU/L", ""], "%": ["%"],
    "10^3/uL": ["K/uL", "x10^3/uL", ""], "points": [""], "mmHg": ["mmHg", ""], "kg": ["kg", ""],
    "mmol/L": ["mmol/L", "mEq/L", ""], "ratio": [""], "pg/mL": ["pg/mL", ""], "ng/mL": ["ng/mL", ""],
    "mL/min/1.73m2": ["mL/min/1.73m2", "mL/min", ""],
}


class GenerateConfig(CommandOptions):
    """Settings of the programmatic teacher (`crit synth --teacher programmatic`)."""

    model_config = ConfigDict(extra="forbid")

    criteria: str = Field(default="criteria/aristotle.crit", description="the .crit file whose questions are written about")
    notes: int = Field(default=400, ge=1, description="how many notes to write")
    seed: int = 0
    real_notes: str | None = Field(default=None, description="a notes file (e.g. MTSamples) to insert mentions into")
    real_share: float = Field(default=0.5, ge=0, le=1, description="share of notes built on a real note")
    exclude: tuple[str, ...] = Field(default=(), description="note ids of real notes never used (evaluation notes)")
    questions_per_note: tuple[int, int] = (3, 6)
    columns: dict[str, str] = Field(default_factory=dict, description="id_column / text_column of the real notes")


@dataclass
class Draft:
    """One sentence to write about a question, before it has a place in a note."""

    question: Question
    mention: Mention
    sentence: str
    readings: list[tuple[float, str]]  # (value, as written), in the order written
    unit: str | None  # as written
    hardness: int  # added to the pair's difficulty


@dataclass
class Written:
    """One mention written into a note: which question, what it says, where it is."""

    question: str
    mention: Mention
    start: int
    end: int
    value: float | None = None  # numeric: the reading this sentence is picked for, if any
    unit: str | None = None


@dataclass
class GeneratedPair:
    note_id: str
    question: Question
    type: str  # boolean, numeric, na-boolean, na-numeric
    answer: str | None
    unit: str | None
    source: str
    span_start: int | None
    span_end: int | None
    difficulty: int
    explanation: str


@dataclass
class GeneratedNote:
    note_id: str
    text: str
    pairs: list[GeneratedPair] = field(default_factory=list)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _messy(sentence: str, rng: random.Random, rate: float = 0.08) -> str:
    """Filler with a typo in about `rate` of its long words (letters swapped), never in a term."""
    words = sentence.split(" ")
    return " ".join(_typo(w, rng) if len(w) > 5 and w.isalpha() and rng.random() < rate else w for w in words)


def _fmt(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}" if decimals else str(int(round(v)))


def _cap_first(t: str) -> str:
    return t if t[:1].isupper() else t[:1].upper() + t[1:]


def _plausible(q: Question) -> tuple[float, float, int]:
    return VALUES_BY_PHRASE.get(q.phrase) or VALUES.get(q.unit or "", (1, 200, 0))


def _value(q: Question, rng: random.Random) -> tuple[float, str]:
    lo, hi, dec = _plausible(q)
    text = _fmt(rng.uniform(lo, hi), dec)
    return float(text), text


def _date(rng: random.Random) -> str:
    m, d = rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"[**{m}-{d}**]", f"{m}/{d}", f"[**2021-{m:02d}-{d:02d}**]"])


class _Silence:
    """Which questions a text is silent about, and which filler sentences are silent about all."""

    def __init__(self, questions: Sequence[Question]):
        self.questions = list(questions)
        self.regexes = [term_regex(t) for q in questions for t in question_terms(q)]

    def silent(self, text: str) -> bool:
        return not any(r.search(text) for r in self.regexes)


def _mention_sentence(q: Question, mention: Mention, rng: random.Random, readings: int = 1
                      ) -> tuple[str, list[tuple[float, str]], str | None, int]:
    """(sentence, readings in order [(value, as written)], unit as written, extra difficulty)."""
    if q.phrase == "age":
        value, written = _value(q, rng)
        sex = rng.choice(["M", "F", "male", "female", "WM", "BF", "man", "woman"])
        return rng.choice(AGE).format(v=written, sex=sex), [(value, written)], None, 0
    t = rng.choice(list(question_terms(q)))
    fill = {"t": t, "T": _cap_first(t)}
    ended = STOPPED if flavour(q) == "drug" else RESOLVED
    templates = ({**TEMPLATES[flavour(q)], "stopped": ended, "pending": PENDING} if q.kind == "boolean"
                 else {"pending": PENDING})
    if mention in templates:
        extra = {"present": 0, "absent": 2, "stopped": 4, "family": 4, "hypothetical": 4, "pending": 3}[mention]
        return rng.choice(templates[mention]).format(**fill), [], None, extra
    unit = rng.choice(UNIT_SPELLINGS.get(q.unit or "", [""]))
    u = "" if not unit else (unit if unit == "%" else " " + unit)
    if mention == "goal":
        (value, written), (_, goal) = _value(q, rng), _value(q, rng)
        while goal == written:
            goal = _value(q, rng)[1]
        sentence = rng.choice(GOAL).format(v=written, u=u, g=goal, d=_date(rng), **fill)
        return sentence, [(value, written)], unit or None, 4
    if readings == 1:
        value, written = _value(q, rng)
        lo, hi, dec = _plausible(q)
        ref = (_fmt(lo + (hi - lo) * 0.1, dec), _fmt(lo + (hi - lo) * 0.3, dec))
        sentence = rng.choice(READING).format(v=written, u=u, d=_date(rng), lo=ref[0], hi=ref[1], **fill)
        return sentence, [(value, written)], unit or None, 1 if "ref" in sentence else 0
    (v1, w1), (v2, w2) = _value(q, rng), _value(q, rng)
    while v2 == v1:
        v2, w2 = _value(q, rng)
    if mention == "range":
        (v1, w1), (v2, w2) = sorted([(v1, w1), (v2, w2)])
        sentence = rng.choice(RANGE).format(v1=w1, v2=w2, u=u, d1=_date(rng), **fill)
        return sentence, [(v1, w1), (v2, w2)], unit or None, 3
    sentence = rng.choice(TWO_READINGS).format(v1=w1, v2=w2, u=u, d1=_date(rng), d2=_date(rng), **fill)
    return sentence, [(v1, w1), (v2, w2)], unit or None, 3


def _plan_mentions(q: Question, rng: random.Random) -> list[tuple[Mention, int]]:
    """The mentions of one question in one note: (kind, readings), at most three."""
    if q.kind == "boolean":
        kinds = TEMPLATES[flavour(q)]
        na = [k for k in ("family", "hypothetical") if k in kinds]
        stopped = ["stopped"] if asks_current(q) else []
        main = rng.choices(["present", "absent", *stopped, *na],
                           weights=[3, 3, *[3] * len(stopped), *[4 / len(na)] * len(na)])[0]
        plan: list[tuple[Mention, int]] = [(main, 1)]
        if rng.random() < 0.3:
            # A second, non-asserting mention: it never changes the answer.
            plan.append((rng.choice(na), 1))
        return plan
    if q.phrase == "age":
        return [("value", 1)]
    main = rng.choices(["value", "pending", "goal"], weights=[2, 1, 1])[0]
    if main in ("pending", "goal"):
        return [(main, 1)]
    if q.order in ("highest", "lowest", "first", "last"):
        n = rng.choices([1, 2, 3, 4], weights=[3, 2, 2, 2 if q.order in ("highest", "lowest") else 0])[0]
        if n == 4:
            return [("range", 2)]  # a range: its two ends in one sentence
        if n == 2:
            return [("value", 2)]  # two readings in one sentence
        if n == 3:
            return [("value", 1), ("value", 1)]  # two sentences, one reading each
    return [("value", 1)]


def _label(q: Question, written: list[Written], text: str) -> tuple[str, str | None, str | None, Written | None, str]:
    """(type, answer, unit, the mention that answers, why) from what was written about `q`."""
    kinds = {w.mention for w in written}
    if q.kind == "boolean":
        for m, answer in (("present", "present"), ("absent", "absent"), ("stopped", "absent")):
            if m in kinds:
                w = next(w for w in written if w.mention == m)
                return "boolean", answer, None, w, f"{m} statement"
        return "na-boolean", None, None, None, "only " + " and ".join(sorted(kinds)) + " mentions"
    readings = [w for w in written if w.value is not None]
    if not readings:
        return "na-numeric", None, None, None, "named with no value"
    pick = {"highest": max(readings, key=lambda w: w.value or 0), "lowest": min(readings, key=lambda w: w.value or 0),
            "first": readings[0]}.get(q.order or "", readings[-1])
    assert pick.value is not None
    return "numeric", answer_text(pick.value), pick.unit, pick, f"{q.order or 'only'} of {len(readings)} reading(s)"


def _sentence_ends(text: str) -> list[int]:
    """Offsets just after a sentence end followed by a space or newline, where a sentence can go."""
    return [m.end() for m in re.finditer(r"[.!?](?=[ \n])", text)]


class _Writer:
    def __init__(self, questions: Sequence[Question], cfg: GenerateConfig, real: Sequence[tuple[str, str]]):
        self.cfg = cfg
        self.questions = [q for q in questions if _writable(q)]
        self.silence = _Silence(questions)
        self.filler = {s: [f for f in fs if self.silence.silent(f)] for s, fs in FILLER.items()}
        self.real = list(real)
        self.skipped: Counter[str] = Counter()

    def note(self, i: int) -> GeneratedNote | None:
        rng = random.Random(f"{self.cfg.seed}:{i}")
        chosen = rng.sample(self.questions, min(len(self.questions), rng.randint(*self.cfg.questions_per_note)))
        use_real = bool(self.real) and rng.random() < self.cfg.real_share
        mentions: list[Draft] = []
        for q in chosen:
            for mention, readings in _plan_mentions(q, rng):
                mentions.append(Draft(q, mention, *_mention_sentence(q, mention, rng, readings)))
        if use_real:
            base_id, base = self.real[rng.randrange(len(self.real))]
            # Only questions the real note never mentions: their passages are then only ours.
            silent = {q.name for q in chosen if not find_passages(base, q)}
            mentions = [m for m in mentions if m.question.name in silent]
            text, placed = _insert(base, [m.sentence for m in mentions], rng)
            note_id = f"gen-{self.cfg.seed}-{i}-on-{base_id}"
        else:
            text, placed = self._whole(mentions, rng)
            note_id = f"gen-{self.cfg.seed}-{i}"
        if not mentions:
            return None
        written: dict[str, list[Written]] = {}
        for m, (start, end) in zip(mentions, placed):
            q, mention, values, unit = m.question, m.mention, m.readings, m.unit
            ws = written.setdefault(q.name, [])
            if values and len(values) == 2:
                # Two readings in one sentence: both are candidates, the order picks one.
                ws.extend(Written(q.name, mention, start, end, value=v, unit=unit) for v, _ in values)
            else:
                ws.append(Written(q.name, mention, start, end, value=values[0][0] if values else None, unit=unit))
        out = GeneratedNote(note_id=note_id, text=text)
        by_name = {q.name: q for q in chosen}
        for name, ws in written.items():
            q = by_name[name]
            passages = find_passages(text, q)
            ours = [(w.start, w.end) for w in ws]
            if any(not any(s < p.end and p.start < e for s, e in ours) for p in passages) or not passages:
                self.skipped["other_passage"] += 1  # the engine would read a sentence we did not write
                continue
            kind, answer, unit, w, why = _label(q, ws, text)
            hardness = max(m.hardness for m in mentions if m.question.name == name)
            difficulty = 3 + hardness + len(ws) - 1 + (1 if use_real else 0)
            source = text[w.start:w.end] if w is not None else ""
            out.pairs.append(GeneratedPair(
                note_id=note_id, question=q, type=kind, answer=answer, unit=unit, source=source,
                span_start=w.start if w else None, span_end=w.end if w else None,
                difficulty=min(10, difficulty), explanation=f"programmatic: {why}",
            ))
        return out if out.pairs else None

    def _whole(self, mentions: list[Draft], rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
        """A note written whole: sections of filler, each mention in a section where it belongs."""
        by_section: dict[str, list[tuple[int | None, str]]] = {s: [] for s in SECTIONS}
        for s in SECTIONS:
            pool = self.filler[s]
            for f in rng.sample(pool, min(len(pool), rng.randint(1, 3))):
                by_section[s].append((None, _messy(f, rng)))
        for k, m in enumerate(mentions):
            age = m.question.phrase == "age"  # "72 y/o M ..." opens the HPI
            section = "HPI" if age else rng.choice(HOME[m.mention])
            at = 0 if age else rng.randint(0, len(by_section[section]))
            by_section[section].insert(at, (k, m.sentence))
        text, placed = "", [(0, 0)] * len(mentions)
        telegraphic = rng.random() < 0.5
        for s in SECTIONS:
            if not by_section[s]:
                continue
            text += f"{s}:" + ("\n" if telegraphic else " ")
            for k, sentence in by_section[s]:
                if k is not None:
                    placed[k] = (len(text), len(text) + len(sentence))
                text += sentence + ("\n" if telegraphic else " ")
            text = text.rstrip(" ") + "\n\n"
        return text.rstrip() + "\n", placed


def _insert(base: str, sentences: list[str], rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    """`base` with each sentence inserted after a sentence end; the offsets of each in the result."""
    ends = _sentence_ends(base) or [len(base)]
    spots = sorted(((rng.choice(ends), k) for k in range(len(sentences))), key=lambda x: (x[0], x[1]))
    text, at, placed = "", 0, [(0, 0)] * len(sentences)
    for offset, k in spots:
        text += base[at:offset] + " "
        placed[k] = (len(text), len(text) + len(sentences[k]))
        text += sentences[k]
        at = offset
    text += base[at:]
    return text, placed


def _writable(q: Question) -> bool:
    """Questions the templates can answer by construction: not the built-in sex question, not a
    relation ("X due to Y"), whose label would need both halves written together."""
    from crit.engine.reading.reader import RELATIONS

    return q.phrase != SEX_PHRASE and not RELATIONS.search(q.phrase) and (q.phrase == "age" or bool(question_terms(q)))


def generate(questions: Sequence[Question], cfg: GenerateConfig, real: Sequence[tuple[str, str]] = ()
             ) -> tuple[list[GeneratedNote], Counter[str]]:
    """Write `cfg.notes` notes with their pairs; the counts of pairs not written, by reason."""
    excluded = set(cfg.exclude)
    writer = _Writer(questions, cfg, [(i, t) for i, t in real if i not in excluded])
    notes = [n for i in range(cfg.notes) if (n := writer.note(i)) is not None]
    return notes, writer.skipped


def synth_programmatic(cfg: GenerateConfig, db: str) -> SynthSummary:
    """Write the generated notes and their pairs into a synth database (`crit synth --teacher
    programmatic`); notes already there are skipped, so a rerun with the same seed adds nothing.

    Example (shell): ``crit synth ../shared/data/mtsamples.jsonl --teacher programmatic --count 2000``
    """
    import time
    from datetime import datetime, timezone

    from crit.engine.eligibility import load_plan
    from crit.engine.store.trainer import open_db, store_note

    t0 = time.perf_counter()
    plan = load_plan(cfg.criteria)
    real = note_pairs(cfg.real_notes, cfg.columns)[0] if cfg.real_notes else []
    notes, skipped = generate(plan.questions, cfg, real)
    teacher = teacher_identity(cfg, plan.source_hash)
    con = open_db(db)
    try:
        done = {r[0] for r in con.execute("SELECT note_id FROM notes").fetchall()}
        now = datetime.now(timezone.utc)
        kept = new = 0
        for n in notes:
            if n.note_id in done:
                continue
            rows = [{
                "note_id": n.note_id, "type": p.type, "question": p.question.text, "answer": p.answer, "unit": p.unit,
                "source": p.source, "span_start": p.span_start, "span_end": p.span_end, "section": "",
                "explanation": p.explanation, "difficulty": p.difficulty, "teacher": teacher,
                "prompt_version": GENERATOR_VERSION, "created_at": now, "question_json": p.question.model_dump_json(),
            } for p in n.pairs]
            store_note(con, n.note_id, n.text, rows, [], teacher, now, GENERATOR_VERSION)
            kept += len(rows)
            new += 1
    finally:
        con.close()
    return SynthSummary(notes_seen=cfg.notes, notes_done=new, notes_skipped=cfg.notes - new, pairs_kept=kept,
                        pairs_dropped=dict(skipped), seconds=round(time.perf_counter() - t0, 2))


def teacher_identity(cfg: GenerateConfig, plan_hash: str) -> str:
    h = hashlib.sha256(f"{plan_hash}|{cfg.seed}|{cfg.real_notes}|{cfg.real_share}".encode()).hexdigest()[:12]
    return f"programmatic@{GENERATOR_VERSION}#{h}"
