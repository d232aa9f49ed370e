"""The reader: answer a question from a note's passages alone, by rule, with no model.

It is the baseline every model must beat (`--backend rules`,
crit.engine.answering.backends.rules) and half of the default answerer
(crit.engine.answering.policy). It loads no model, so it runs anywhere, at thousands of answers a
second. For one (note, question) it reads the passages of crit.engine.reading.passages:

- boolean: each mention's context (crit.engine.reading.context). A mention of the patient that is
  not negated is "present"; a negated one is "absent" when no mention is present; a
  question with no mention of the patient (only family, other people, plans and risks, allergies)
  is "not mentioned". For a question on a current therapy or state, a drug or habit that stopped
  ("metformin was discontinued", "quit smoking") is "absent". A denial also answers "absent" when it
  covers the question: a denial of its parent concept ("no history of diabetes" for type 1 diabetes:
  passages.parent_terms, only for "type N" phrases), or, for a therapy question, of all medications
  ("MEDICATIONS: None.", "takes no medications"). Broader denials ("no medical problems") are not
  read: labellers disagree on what they cover. A phrase that relates two findings ("atrial
  fibrillation due to a reversible cause such as thyrotoxicosis") needs both halves in one passage.
- numeric: every number written within 30 characters after a term, with the numbers chained to it
  ("from 2.08 to 2.67", "25% to 30%"), each with the unit written after it; a blood-pressure pair
  ("BP 151/102") for a systolic or diastolic question; a number before a term that starts with its
  unit ("37 weeks gestation"). Not a goal, a threshold or an instruction ("goal INR 2 to 3", "call if
  the temperature is over 101.5"), nor another analyte ("creatinine clearance"). All are kept
  (Answer.candidates, with spans); the question's order then picks one: highest / lowest by value in
  the question's unit, first / last by position. The evidence of a number is its own span.
  Age reads "81-year-old", "age 81" and "81 yo", not a relative's; a month or week age keeps its unit.
- the built-in sex question counts the passages with female and with male words; where both
  appear (a boy and his mother), the patient's own descriptor ("a 62-year-old male") decides.

Each answer names its reading class (Answer.reading: "named", "named-listed", "denied", "stopped",
"parent-denied", "no-medications", "conflict", "possible", "pressure-pair", "value-after-term",
"value-after-term-no-unit", ...), and the rules are sure of it (`confident`) only where that class was
measured at least 0.97 precise on the dev trials of tests/trials (SURE_READINGS).
crit.engine.answering.policy asks the model only where the rules are not sure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from crit.engine.answers import Candidate
from crit.engine.reading.context import RELATIVES, read_context
from crit.engine.reading.passages import (
    AGE,
    NO_MEDICATIONS,
    NO_MEDICATIONS_TERM,
    Passage,
    is_therapy,
    parent_terms,
    phrase_terms,
    question_terms,
    term_regex,
    terms_regex,
    vital_sign_terms,
)
from crit.grammar import units
from crit.grammar.questions import SEX_PHRASE, Question

READER_VERSION = "rules-3"  # 2: the patient's own descriptor decides sex where passages disagree. 3: reading
# classes, pressure pairs, stopped drugs, allergies, denials of a parent or of all medications, goals.

# Each answer names how it was read (its reading class, stored as answers.reading). The rules are sure only of
# the classes measured precise on the dev trials of tests/trials (benchmarks/RESULTS.md, "Reading classes"):
# every other answer is unsure, so the default policy asks the model and a reviewer sees it apart.
SURE_READINGS = frozenset({
    "no-mention",  # no term anywhere in the note (the gate's "not mentioned")
    "age-pattern",  # "81-year-old", "age 81": 0.993 of 143
    "pressure-pair",  # "BP 151/102", systolic first: 1.000 of 42
    "no-medications",  # "MEDICATIONS: None." for a question on a therapy: 1.000 of 11
    # The built-in sex question (benchmarks/sex_descriptor.py): no trial asks it, so it keeps its earlier standing.
    "sex-words-agree", "sex-descriptor",
})
# Readings with no hedge: the passage itself affirms or denies (no conflict, no "possible", no half relation).
# A model's quote that reads so plainly against its answer is refused (crit.engine.answering.checks).
PLAIN_READINGS = frozenset({"named", "named-listed", "denied", "stopped", "parent-denied", "no-medications"})
# Measured but not sure (dev precision, benchmarks/RESULTS.md): "value-after-term" 0.950 of 60, "named-listed"
# 0.881 of 42, "named" 0.650 of 40 (a pregnancy a delivery ended), "denied" 0.714 of 7, "parent-denied" 1.000 of
# only 8, "value-before-term" 1.000 of only 3; every class with a hedge (conflict, possible, -no-unit) is unsure.

# The two readings of a number. A value the reader takes stands alone: not inside a word, a date or a
# ratio ("151/102" is a pair, read apart). A number a text writes is any run of digits: a model's
# quote "BP 151/102" writes 151, so an answer of 151 is in its quote.
_VALUE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\d/])(?!\.\d)")
_WRITTEN = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_CHAIN = re.compile(r"\s*(?:%|[a-zA-Z/µμ^0-9.]+)?\s*(?:to|-|–|and|through|up to)\s*$", re.I)
_UNIT = re.compile(
    r"\s*(degrees?\s+(?:fahrenheit|celsius|centigrade|[FC])\b|deg\s+[FC]\b|°\s?[FCfc]\b|%"
    r"|(?:(?:beats|breaths)\s+)?(?:per|a)\s+min(?:ute)?\b|mg\s+percent\b"
    r"|[a-zA-Zµμ][a-zA-Z0-9µμ^]*(?:/[a-zA-Z0-9µμ^.]+)?)", re.I)
# Short words that may follow a number without being its unit ("80 and stable", "2.1 at baseline"), though
# pint knows them as units (at: technical atmosphere; a: year; in: inch; are: 100 m2). Any other word
# right after a number that names a unit (units.names_a_unit) is kept as the unit the note wrote: one crit
# cannot convert makes the value unknown (reason `unit`), never a number in the question's unit.
_NOT_UNITS = frozenset("a an and are as at by in is it of on or per the to x".split()
                       # the next vital sign's label in a line of vitals ("Pulse 117 RR 12 98% sat")
                       + "bp hr rr sat sats temp pulse resp wt ht o2 spo2".split())
# A lone letter after a number: a temperature's scale where the question asks for a temperature
# ("98.6 F", "37 C", "310 K"); elsewhere "K" is thousands ("platelets 150 K") and F or C mean nothing.
_TEMPERATURE_LETTERS = {"f": "°F", "c": "°C", "k": "kelvin"}
_AGE_UNITS = {"y": "years", "m": "months", "w": "weeks", "d": "days"}
_FEMALE = re.compile(r"\b(she|her|hers|herself|woman|female|lady|girl|mrs|ms|miss)\b", re.I)
_MALE = re.compile(r"\b(he|him|his|himself|man|male|gentleman|boy|mr)\b", re.I)
# Sections that list the patient's own diagnoses, problems or drugs: a plain mention there is the patient's.
_LISTING = re.compile(r"(?:PAST MEDICAL|PMH|MEDICAL HISTORY|PAST HISTORY|HISTORY OF PRESENT|PROBLEM|DIAGNOS|\w+ DIAGNOS"
                      r"|IMPRESSION|ASSESSMENT|MEDICATION|CURRENT MEDICATION|HOME MEDICATION|DISCHARGE MEDICATION"
                      r"|ADMISSION MEDICATION|MEDS)")
# A question on a current state: a stopped drug or habit answers it absent ("current smoking", "active").
CURRENT_STATE = re.compile(r"\b(?:current|currently|active|ongoing)\b", re.I)
# A question that asks for a plan or a risk itself: plan and risk cues do not make its mentions what-ifs.
_WHAT_IF_ASKED = re.compile(r"\b(?:planned|plan|scheduled|risk|candidate|recommended)\b", re.I)
RELATIONS = re.compile(r"\b(?:due to|secondary to|caused by|such as)\b", re.I)  # "X due to Y": both halves needed
# A different analyte that begins with this one's term: "hemoglobin A1c" is not hemoglobin.
# So is "creatinine clearance", an "albumin to creatinine ratio", "creatine kinase" or a "glucose tolerance" test.
_OTHER_ANALYTE = re.compile(
    r"\s*(?:a1c|a 1c|a1-c|clearance|ratio|kinase|phosphokinase|index|tolerance|excretion|/\s*creatinine)\b", re.I)
# "H&H 10/32", "H and H 13 and 40": hemoglobin and hematocrit as a pair; hemoglobin is the
# smaller, whichever order they are written in (tests/gold/README.md).
_H_AND_H = re.compile(r"\bH\s*(?:&|and)\s*H\b\D{0,25}?(\d+(?:\.\d+)?)\s*(?:/|and|,)\s*(\d+(?:\.\d+)?)", re.I)
_VALUE_REACH = 30  # characters between a term and its first number
# The patient's own descriptor: "a 62-year-old male", "9-month-old Hispanic male", "55 yo woman". The
# other people of a note ("his mother", a doctor's "she") are seldom written of so.
_DESCRIBED = re.compile(
    rf"(?:{AGE.pattern})[\s,]+(?:(?!(?:with|and|who|of|his|her|is|was)\b)[A-Za-z-]+\s+){{0,3}}?"
    r"(?P<sex>male|female|man|woman|boy|girl|gentleman|lady)\b", re.I)
# ... unless the sentence has turned to another person first ("2 children, a 23-year-old and a 20-year-old female").
_OTHER_PERSON = re.compile(
    r"\b(?:grand\w+|(?:%s)s?)\b" % "|".join(RELATIVES + ("wife", "husband", "child", "children", "partner", "friend",
                                                          "donor")), re.I)


def decide(question: Question, note_text: str, passages: Sequence[Passage], *, reach: int = _VALUE_REACH) -> dict:
    """The rules' answer over `passages`, as Answer fields plus 'label' (the JSON answer). `reach`: the
    characters a number may lie after its term (a check of a model's quote reads further,
    crit.engine.answering.policy.objection)."""
    if question.phrase == SEX_PHRASE:
        fields = _sex(note_text, passages)
    elif question.kind == "boolean":
        fields = _boolean(question, note_text, passages)
    elif question.phrase == "age":
        fields = _age(note_text, passages)
    else:
        fields = _numeric(question, note_text, passages, reach)
    return fields | {"confident": fields["reading"] in SURE_READINGS}


def _grounded(p: Passage, note_text: str) -> dict:
    return dict(source=p.text(note_text), span_start=p.start, span_end=p.end, grounded=True, match="exact")


def _value_grounded(c: Candidate, note_text: str) -> dict:
    """A number's evidence is its own span, the value and its unit ("1.4 mg/dL"); the sentence around it is
    the answer's passage (the store's passages table), which the report shows as context."""
    return dict(source=note_text[c.span_start:c.span_end], span_start=c.span_start, span_end=c.span_end,
                grounded=True, match="exact")


def _not_mentioned(reading: str) -> dict:
    return dict(label="not mentioned", na=True, reading=reading)


def _boolean(question: Question, note_text: str, passages: Sequence[Passage]) -> dict:
    relation = RELATIONS.search(question.phrase)
    needs: list[re.Pattern[str]] = []
    if relation:  # both halves of "X due to Y" in one passage
        qualifier = question.phrase[relation.end():]
        needs = [term_regex(t) for t in phrase_terms(qualifier)]
    therapy = is_therapy(question)
    current = therapy or bool(CURRENT_STATE.search(question.phrase))
    what_if_asked = bool(_WHAT_IF_ASKED.search(question.phrase))  # "a planned ablation": a plan is the finding
    parents = [term_regex(t) for t in parent_terms(question)]
    affirmed: list[tuple[Passage, bool]] = []
    denied: list[tuple[Passage, str]] = []
    other = 0
    for p in passages:
        text = p.text(note_text)
        if needs and not any(r.search(text) for r in needs):
            other += 1
            continue
        # Every mention in the passage counts ("No TIA. No CVA." holds two denials).
        for start, end in _term_matches(question, note_text, p):
            ctx = read_context(text, start - p.start, end - p.start, p.section)
            if ctx.family or ctx.allergy or (ctx.hypothetical and not what_if_asked):
                other += 1
            elif ctx.negated:
                denied.append((p, "denied"))
            elif ctx.stopped and current:
                denied.append((p, "stopped"))
            else:
                affirmed.append((p, ctx.possible))
        for start, end in (m.span() for r in parents for m in r.finditer(note_text, p.start, p.end)):
            ctx = read_context(text, start - p.start, end - p.start, p.section)
            if ctx.negated and ctx.about_patient:
                denied.append((p, "parent-denied"))
        if p.term == NO_MEDICATIONS_TERM or (therapy and NO_MEDICATIONS.search(note_text, p.start, p.end)):
            denied.append((p, "no-medications"))
    if affirmed:
        p, possible = next(((p, f) for p, f in affirmed if not f), affirmed[0])
        reading = ("conflict" if denied else "possible" if possible else "half-relation" if relation and other
                   else "named-listed" if p.section and _LISTING.match(p.section) else "named")
        return dict(label="present", value=1.0, reading=reading, **_grounded(p, note_text))
    if denied:
        p, how = denied[0]
        return dict(label="absent", value=0.0, reading="mixed-denial" if other else how, **_grounded(p, note_text))
    return _not_mentioned("not-about-patient" if passages else "no-mention")


def _sex(note_text: str, passages: Sequence[Passage]) -> dict:
    female = [p for p in passages if _FEMALE.search(p.text(note_text))]
    male = [p for p in passages if _MALE.search(p.text(note_text))]
    if not female and not male:
        return _not_mentioned("no-mention")
    if female and male:
        # Passages disagree (a boy and his mother): the patient's own descriptor decides, if all agree.
        described = [(p, bool(_FEMALE.fullmatch(m.group("sex"))))
                     for p in passages for m in _DESCRIBED.finditer(note_text, p.start, p.end)
                     if not _OTHER_PERSON.search(note_text, p.start, m.start())]
        if described and len({is_female for _, is_female in described}) == 1:
            p, is_female = described[0]
            return _sex_answer(is_female, "sex-descriptor", p, note_text)
    if len(female) >= len(male):
        return _sex_answer(True, "sex-words-agree" if not male else "sex-words-disagree", female[0], note_text)
    return _sex_answer(False, "sex-words-agree" if not female else "sex-words-disagree", male[0], note_text)


def _sex_answer(is_female: bool, reading: str, p: Passage, note_text: str) -> dict:
    return dict(label="present" if is_female else "absent", value=1.0 if is_female else 0.0, reading=reading,
                **_grounded(p, note_text))


def _age(note_text: str, passages: Sequence[Passage]) -> dict:
    for p in passages:
        for m in AGE.finditer(note_text, p.start, p.end):
            if _someone_else(note_text, p, m.start(), m.end()):
                continue  # "her father died at age 86", "delivered to a 22-year-old mom"
            unit = _AGE_UNITS[m.group(2)[0].lower()] if m.group(2) else "years"
            value = _mixed_number(m.group(1) or m.group(3) or m.group(4))
            cand = Candidate(value=value, unit=unit, span_start=m.start(), span_end=m.end())
            return dict(label=value, value=value, unit=unit, candidates=[cand], reading="age-pattern",
                        **_value_grounded(cand, note_text))
    return _not_mentioned("term-no-value" if passages else "no-mention")


# A relative named just before an age, or as the noun it describes: the age is theirs.
_RELATIVE_AFTER = re.compile(r"[\s,]+(?:[A-Za-z-]+\s+){0,2}?(?:%s)s?\b" % "|".join(RELATIVES), re.I)


def _someone_else(note_text: str, p: Passage, start: int, end: int) -> bool:
    before = re.split(r"[.;]\s", note_text[max(p.start, start - 40):start])[-1]  # this sentence only
    return bool(_OTHER_PERSON.search(before) or _RELATIVE_AFTER.match(note_text, end, p.end))


def _unit_after(note_text: str, at: int, limit: int, temperature: bool) -> tuple[str | None, int]:
    """The unit written right after a number ending at `at`, and where it ends: a unit crit reads, a word
    that names a unit crit cannot read (kept as written, so it never passes for the question's unit), or
    None."""
    found = _UNIT.match(note_text, at, limit)
    if not found:
        return None, at
    written = found.group(1).rstrip(".")  # "2.67 mg/dL." ends a sentence
    end = found.start(1) + len(written)
    if len(written) == 1 and written.isalpha():
        letter = _TEMPERATURE_LETTERS.get(written.lower()) if temperature else None
        if letter is not None:
            return letter, end
        return (written, end) if units.is_known_unit(written) else (None, at)  # "5 g"; "F" alone is no unit here
    if units.is_known_unit(written):
        return written, end
    if written.lower() in _NOT_UNITS or not units.names_a_unit(written):
        return None, at
    return written, end


def values_after(note_text: str, term_end: int, limit: int, reach: int = _VALUE_REACH,
                 temperature: bool = False) -> list[Candidate]:
    """The numbers written after a term (see module docstring), each with its unit and span. `temperature`:
    the question asks for a temperature, so a lone F, C or K after a number is its scale."""
    if _OTHER_ANALYTE.match(note_text, term_end, limit):
        return []
    out: list[Candidate] = []
    pos = term_end
    for m in _VALUE.finditer(note_text, term_end, limit):
        gap = note_text[pos : m.start()]
        if not out and m.start() - term_end > reach:
            break
        if out and not _CHAIN.match(gap):
            break
        if not out and re.search(r"[.;]\s", gap):  # the term's clause ended before any number
            break
        value = float(m.group(1).replace(",", ""))
        unit, end = _unit_after(note_text, m.end(), limit, temperature)
        out.append(Candidate(value=value, unit=unit, span_start=m.start(), span_end=end))
        pos = end
    # "2.1 and 2.3 mg/dL": numbers of a chain without their own unit take the last one's.
    if out and out[-1].unit and any(c.unit is None for c in out):
        out = [c if c.unit else c.model_copy(update={"unit": out[-1].unit}) for c in out]
    return out


def _with_count_unit(c: Candidate, question: Question) -> Candidate:
    """"platelets 126,000": a count written out in cells, not in thousands, for a question in 10^3/uL."""
    if c.unit is None and question.unit is not None and "10^3" in question.unit and c.value >= 1000:
        return c.model_copy(update={"unit": "/mm3"})
    return c


def _in_unit(c: Candidate, question: Question) -> float | None:
    """A candidate's value in the question's unit (None when unconvertible)."""
    if question.unit is None:
        return c.value
    return units.convert(c.value, c.unit, question.unit, units.analyte_of(question.phrase, question.aka))


def _numeric(question: Question, note_text: str, passages: Sequence[Passage], reach: int) -> dict:
    found: list[tuple[Candidate, Passage, str]] = []
    hemoglobin = units.analyte_of(question.phrase, question.aka) == "hemoglobin"
    temperature = question.unit is not None and units.normalise_unit(question.unit) in ("°C", "°F", "kelvin")
    side = _PRESSURE_SIDE.search(question.phrase)
    vital = bool(vital_sign_terms(question.phrase))
    for p in passages:
        for hh in _H_AND_H.finditer(note_text, p.start, p.end) if hemoglobin else ():
            g = 1 if float(hh.group(1)) <= float(hh.group(2)) else 2
            found.append((Candidate(value=float(hh.group(g)), span_start=hh.start(g), span_end=hh.end(g)), p, "h-and-h"))
        for start, end in _term_matches(question, note_text, p):
            if hemoglobin and _H_AND_H.match(note_text, start):
                continue  # read as a pair above
            if _not_a_measurement(note_text, p, start, end):
                continue  # "goal INR 2 to 3", "call if the temperature is over 101.5"
            if side and not _PRESSURE_SIDE.search(note_text, start, end):
                # "BP 151/102": the systolic is the first of the pair, the diastolic the second.
                group = 1 if side.group(0).lower() == "systolic" else 2
                found.extend((c, p, "pressure-pair") for c in _pressure_pairs(note_text, end, p.end, reach, group))
                continue
            # A term that starts with its unit ("weeks gestation") follows its number: "37 weeks gestation".
            # Any other term reads the numbers after it, and one before it only where none follows.
            unit_led = units.is_known_unit(_first_word(note_text[start:end]))
            before = _value_before(note_text, p, start, end, question) if unit_led else None
            if before is not None:
                found.append((before, p, "value-before-term"))
                continue
            after = values_after(note_text, end, p.end, reach, temperature)
            found.extend((_with_count_unit(c, question), p, "value-after-term") for c in after)
            if not after and not unit_led and (before := _value_before(note_text, p, start, end, question)) is not None:
                found.append((before, p, "value-before-term"))
    if not found:
        return _not_mentioned("term-no-value" if passages else "no-mention")
    if vital:
        found = [(_with_vital_unit(c, question), p, how) for c, p, how in found]
    seen: set[tuple[int, int]] = set()
    unique = [(c, p, how) for c, p, how in found
              if not ((c.span_start, c.span_end) in seen or seen.add((c.span_start, c.span_end)))]
    unique.sort(key=lambda cp: cp[0].span_start)
    order = question.order or "value"
    chosen = unique[0]
    if order in ("highest", "lowest"):
        comparable = [(c, p, how, v) for c, p, how in unique if (v := _in_unit(c, question)) is not None]
        if comparable:
            pick = (max if order == "highest" else min)(comparable, key=lambda x: x[3])
            chosen = pick[:3]
    elif order in ("last", "most recent"):
        chosen = _most_recent(note_text, unique)
    elif order == "last written":
        chosen = unique[-1]
    c, p, how = chosen
    if c.unit is None and question.unit is not None and not units.has_no_dimension(question.unit):
        reading = f"{how}-no-unit"  # read in the question's unit only where the file says `assumed`
    elif c.unit is not None and _in_unit(c, question) is None:
        reading = f"{how}-unit-unknown"  # "16 mL per minute" for a question in mL/min/1.73m2
    else:
        reading = how
    return dict(label=c.value, value=c.value, unit=c.unit, candidates=[c for c, _, _ in unique], reading=reading,
                **_value_grounded(c, note_text))


# A value the note calls the latest ("his last hemoglobin A1c ... is 11.9"), and the dates notes write.
_RECENT = re.compile(r"\b(?:last|latest|most recent|current(?:ly)?|today'?s?|now|recent)\b", re.I)
_DATE = re.compile(r"\b(\d{1,2})/(?:(\d{1,2})/)?(\d{4}|\d{2})\b")


def _most_recent(note_text: str, found: list[tuple[Candidate, Passage, str]]) -> tuple[Candidate, Passage, str]:
    """The most recent measurement: one the note calls the latest, else the latest dated one when every
    value has a date in its passage, else the last written."""
    recent = [f for f in found
              if _RECENT.search(re.split(r"[.;]\s", note_text[max(f[1].start, f[0].span_start - 60):f[0].span_start])[-1])]
    if len(recent) == 1:
        return recent[0]
    dated = [(d, f) for f in found if (d := _date_near(note_text, f[1], f[0].span_start)) is not None]
    if len(dated) == len(found) > 1 and len({d for d, _ in dated}) > 1:
        return max(dated, key=lambda df: df[0])[1]
    return found[-1]


def _date_near(note_text: str, p: Passage, at: int) -> tuple[int, int, int] | None:
    """(year, month, day) of the date written nearest a value in its passage (08/2019, 3/14/19)."""
    best = None
    for m in _DATE.finditer(note_text, p.start, p.end):
        first, second, year = int(m.group(1)), m.group(2), int(m.group(3))
        year += 2000 if year < 50 else 1900 if year < 100 else 0
        date = (year, first, int(second)) if second else (year, first, 1)
        if not 1 <= first <= 12:
            continue
        distance = abs(m.start() - at)
        if best is None or distance < best[0]:
            best = (distance, date)
    return best[1] if best else None


_PRESSURE_SIDE = re.compile(r"\b(?:systolic|diastolic)\b", re.I)
# "151/102", "151 / 102", "70/palpable": a blood-pressure reading, systolic first.
_PAIR = re.compile(r"(?<![\d/.])(\d{2,3})\s*/\s*(\d{2,3}|palp\w*)(?![\d/])", re.I)
_PAIR_CHAIN = re.compile(r"\s*(?:mmHg|mm Hg)?\s*(?:,|to|-|–|and|through|then|now)?\s*(?:\w+\s+){0,2}?$", re.I)


def _pressure_pairs(note_text: str, term_end: int, limit: int, reach: int, group: int) -> list[Candidate]:
    """The systolic (group 1) or diastolic (group 2) numbers of the pressure pairs after a term."""
    out: list[Candidate] = []
    pos = term_end
    for m in _PAIR.finditer(note_text, term_end, limit):
        gap = note_text[pos:m.start()]
        if (not out and m.start() - term_end > reach) or (out and not _PAIR_CHAIN.match(gap)):
            break
        if not out and re.search(r"[.;]\s", gap):
            break
        pos = m.end()
        if not m.group(group).isdigit():
            continue  # "70/palpable" has no diastolic
        unit = "mmHg" if re.match(r"\s*mm\s?Hg", note_text[m.end():m.end() + 8], re.I) else None
        out.append(Candidate(value=float(m.group(group)), unit=unit, span_start=m.start(group), span_end=m.end(group)))
    return out


# Words before a term, in its clause, that make its number a goal, a threshold or an instruction, not a
# measurement; and words between a term and its number that do the same.
_INSTRUCTION_BEFORE = re.compile(r"\b(?:if|goal|target|call|return|should|keep|maintain|aim|titrate|until)\b", re.I)
_GOAL_BETWEEN = re.compile(r"\b(?:goal|target|normal range|normal value|reference|range of normal|desired|therapeutic range)\b", re.I)


def _not_a_measurement(note_text: str, p: Passage, start: int, end: int) -> bool:
    clause = re.split(r"[.;,]\s", note_text[p.start:start])[-1]
    gap = re.match(r"\D*", note_text[end:p.end])
    return bool(_INSTRUCTION_BEFORE.search(clause) or (gap and _GOAL_BETWEEN.search(gap.group())))


# "33 weeks' gestation", "40 weeks pregnant", "a 39-week intrauterine pregnancy": a number written before
# the term, with a unit of the question's dimension between them (or starting the term: "weeks gestation").
_BEFORE = re.compile(r"(\d+(?:\.\d+)?(?:-1/2)?)[\s-]*(?:([A-Za-z]+)['’]?s?['’]?)?"
                     r"(?:[\s,]+(?:and\s+)?\d+[\s-]*days?)?[\s-]*(?:of\s+)?$")


def _value_before(note_text: str, p: Passage, start: int, end: int, question: Question) -> Candidate | None:
    if question.unit is None:
        return None
    window_start = max(p.start, start - 30)
    m = _BEFORE.search(note_text, window_start, start)
    if m is None:
        return None
    unit = m.group(2) or _first_word(note_text[start:end])
    if not units.is_known_unit(unit) or units.convert(1.0, unit, question.unit) is None:
        return None
    value = _mixed_number(m.group(1))
    return Candidate(value=value, unit=units.normalise_unit(unit), span_start=m.start(1), span_end=m.end(2) if m.group(2) else m.end(1))


def _mixed_number(written: str) -> float:
    """"3-1/2" (a mixed number, as in "3-1/2-year-old" or "38-1/2 weeks") is 3.5; any other is as written."""
    return float(written[:-4]) + 0.5 if written.endswith("-1/2") else float(written)


def _first_word(text: str) -> str:
    m = re.match(r"[A-Za-z]+", text)
    return m.group(0) if m else ""


def _with_vital_unit(c: Candidate, question: Question) -> Candidate:
    """A vital sign written with no unit is in its one unit ("pulse 88", "BP 120/80"); a bare temperature
    is Fahrenheit or Celsius by its size (98.6, 37.2), since no fever reads 60-90 in either."""
    if c.unit is not None or question.unit is None:
        return c
    unit = units.normalise_unit(question.unit)
    if unit in ("°C", "°F"):
        unit = "°F" if 90 <= c.value <= 110 else "°C" if 30 <= c.value <= 45 else None
    return c.model_copy(update={"unit": unit}) if unit else c


def _term_matches(question: Question, note_text: str, p: Passage) -> list[tuple[int, int]]:
    """(start, end) of every term match inside a passage, in one pass; where terms overlap the longest wins
    ("systolic blood pressure", not its "blood pressure")."""
    terms = question_terms(question)
    return [m.span() for m in terms_regex(terms).finditer(note_text, p.start, p.end)] if terms else []


def numbers_written(text: str) -> list[float]:
    """The numbers a text writes ("126,000" is 126000)."""
    return [float(n.replace(",", "")) for n in _WRITTEN.findall(text)]


def number_in(value: float, text: str) -> bool:
    """Whether `text` writes the number `value` ("126,000" writes 126000)."""
    return any(abs(n - value) < 1e-9 for n in numbers_written(text))
