"""Evidence: find the passages of a note that mention a question, before any model is asked.

For each (note, question) this module returns the sentences (or lines) that mention one of
the question's terms, with character spans into the note. Everything after it reads these
passages only: the gate (no passage: "not mentioned", no model call), the rules answerer
(crit.engine.reading.reader) and the model, which is shown the passages, not the note.

Terms of a question, in the order they are tried:
- the phrase, split into its alternatives on "," / "or" / "and" / "such as" / "due to",
  with leading articles and modifiers ("a prior", "active", "moderate") stripped, so
  "a prior stroke, transient ischemic attack or systemic embolism" gives "stroke",
  "transient ischemic attack" and "systemic embolism"; a lone word before a longer last
  part borrows its head noun ("alcohol or drug abuse": "alcohol abuse", "drug abuse");
- the question's `aka` terms, as written in the .crit file;
- the words notes use for a vital sign the phrase names ("BP" for a systolic pressure, "pulse");
- the terms of the offline vocabularies (crit.engine.reading.vocabulary: a drug class's members
  and their brands, ICD-10-CM and MeSH synonyms), less the file's `not aka` terms;
- denial-only parent terms ("diabetes" for "type 1 diabetes mellitus"), and for a question on a
  therapy, the lines that say the patient takes no medications;
- built-in families for the two questions no term list can cover: age ("81-year-old",
  "age 81", "81 yo") and the built-in sex question (she, he, woman, Mr., ...).
Each term matches case-insensitively on word boundaries, never after "non-", with systematic
variants: a plural ending, a hyphen, a space or a comma between words ("a-fib", "a fib"), an
optional period after each letter of an abbreviation ("C.H.F."), Roman numerals after "type"
("type II"), and "X type N" for "type N X". A question's terms are one pattern (terms_regex), and
every question's patterns are tried in one scan of a note (TermScanner), at word starts only.

A passage records the section it sits in (the last "HEADER:" line before it), because a
finding under FAMILY HISTORY is the family's, not the patient's. Pure functions, no model,
no I/O: a few milliseconds a note for the 26 questions of ARISTOTLE.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from crit.grammar.questions import SEX_PHRASE, Question

# Bump when the passages found for a note can change: it is part of every answer key.
EVIDENCE_VERSION = "evidence-3"  # 2: a label line joins the value-only line below it. 3: vital-sign words,
# "type 2" word orders, parent terms and "no medications" lines find passages, as do the terms of offline
# vocabularies (crit.engine.reading.vocabulary: drug classes, brands, ICD-10-CM, MeSH)

# Words that qualify a finding without naming it; stripped from the front of a term.
_MODIFIERS = frozenset(
    "a an the any prior previous past history of known current currently active acute chronic "
    "recent moderate severe mild significant planned high risk clinically documented".split()
)
# Generic heads: "ticlopidine therapy" is also looked for as "ticlopidine".
_GENERIC_HEADS = frozenset("therapy treatment use usage procedure".split())
_SPLIT = re.compile(r",|;|\bor\b|\band\b|\bsuch as\b|\bdue to\b|\bsecondary to\b|\bincluding\b", re.I)

# The two questions whose evidence is a pattern, not a term (see module docstring).
# AGE finds an age's passage here and reads its value in the rules answerer (groups: the number and
# unit of "81-year-old", the number of "81 yo", the number of "age 81"). A mixed number
# ("3-1/2-year-old") is one age; the "2" of its fraction is never taken for the age.
AGE = re.compile(
    r"(?<![\d/])\b(\d{1,3}(?:\.\d)?|\d{1,2}-1/2)[- ]?(years?|yrs?|months?|mos?|weeks?|wks?|days?)[- ]?old\b"
    r"|\b(\d{1,3})\s*(?:yo|y/o|y\.o\.)(?![a-z])"
    r"|\bage(?:d)?\s*(?:of\s*)?:?\s*(\d{1,3})\b",
    re.I,
)
_SEX_WORDS = (
    re.compile(r"\b(?:she|her|hers|herself|woman|women|female|lady|girl|mrs|ms|miss|mother of)\b", re.I),
    re.compile(r"\b(?:he|him|his|himself|man|men|male|gentleman|boy|mr)\b", re.I),
)
_BUILTIN: dict[str, tuple[re.Pattern[str], ...]] = {"age": (AGE,), SEX_PHRASE: _SEX_WORDS}
_BUILTIN_TERM = {"age": "(age pattern)", SEX_PHRASE: "(sex words)"}  # Passage.term

# A section header: a line that starts with capitals and a colon ("FAMILY HISTORY:").
HEADER = re.compile(r"^[ \t]*([A-Z][A-Z0-9 /&,()'-]{2,60}):", re.M)
# A sentence end: a period, "!" or "?", then blanks and a capital, a digit or a bracket on the same line, unless
# the period closes an initial or a title (or sits inside a number). And a line end: `sentences` finds both in
# one pass over a note. The pattern starts with the characters it can match, so that the search skips to them
# (a pattern that starts with its lookbehinds is tried at every place in the note: half a millisecond a note).
_CUT = re.compile(r"[\n.!?](?:(?<=\n)|(?<!\b[A-Z].)(?<!\bDr.)(?<!\bMr.)(?<!\bMrs.)(?<!\bMs.)(?<!\bvs.)(?<!\bSt.)"
                  r"(?=[^\S\n]+[A-Z0-9(\[]))")

_LIST_NUMBER = re.compile(r"\s*\(?\d{1,2}[.)]")

MAX_PASSAGE_CHARS = 400


class Passage(BaseModel):
    """One sentence or line that mentions a question: where it is, and which term found it."""

    model_config = ConfigDict(frozen=True)

    start: int  # character offsets into the note, end exclusive
    end: int
    term: str  # the term (or pattern family) that matched, as the .crit file or phrase writes it
    term_start: int
    term_end: int
    section: str | None = None  # the header above the passage, upper-cased ("FAMILY HISTORY")

    def text(self, note_text: str) -> str:
        return note_text[self.start : self.end]


def _strip_modifiers(words: list[str]) -> list[str]:
    while words and words[0].lower() in _MODIFIERS:
        words = words[1:]
    return words


def phrase_terms(phrase: str) -> list[str]:
    """The alternatives a phrase names, modifiers stripped (see module docstring)."""
    parts = [_strip_modifiers(p.split()) for p in _SPLIT.split(phrase)]
    parts = [p for p in parts if p]
    last = parts[-1] if parts else []
    terms: list[str] = []
    for words in parts:
        # Only "X or Y Z" shares a head; in a list ("stroke, TIA or systemic embolism") each
        # part is whole.
        if len(parts) == 2 and len(words) == 1 and len(last) > 1 and words is not last:
            terms.append(f"{words[0]} {last[-1]}")  # "alcohol" + "abuse"
        else:
            terms.append(" ".join(words))
        if len(words) > 1 and words[-1].lower() in _GENERIC_HEADS:
            terms.append(" ".join(words[:-1]))
    return list(dict.fromkeys(terms + [v for t in terms for v in _reordered(t)]))


# "type 2 diabetes mellitus" is as often written "diabetes mellitus type 2", "diabetes type II" or
# "diabetes mellitus, type 2" (term_regex reads II for 2 and lets a comma stand between words).
_TYPED = re.compile(r"^type\s+(\S+)\s+(.+)$", re.I)


def _typed_heads(term: str) -> tuple[str, list[str]] | None:
    """"type 2 diabetes mellitus" -> ("2", ["diabetes mellitus", "diabetes"]): the type, and the heads it
    qualifies ("mellitus" is often left out); None for a term with no leading "type N"."""
    m = _TYPED.match(term)
    if not m:
        return None
    head = m.group(2)
    short = head[: -len(" mellitus")] if head.lower().endswith(" mellitus") else None
    return m.group(1), [head, short] if short else [head]


def _reordered(term: str) -> list[str]:
    typed = _typed_heads(term)
    if typed is None:
        return []
    kind, heads = typed
    return [f"{h} type {kind}" for h in heads] + [f"type {kind} {h}" for h in heads[1:]]


# A question on a therapy ("antidepressant therapy", "an ACE inhibitor") is denied by a note that says
# the patient takes no medications at all. The phrase's words say it asks about a drug.
_THERAPY = re.compile(
    r"\b(?:therapy|treatment|medications?|drugs?|inhibitors?|blockers?|antagonists?|agonists?|antibiotics?"
    r"|anticoagula\w*|antidepressants?|antiplatelets?|antipsychotics?|steroids?|corticosteroids?|insulin"
    r"|statins?|metformin|warfarin|aspirin)\b", re.I)
NO_MEDICATIONS = re.compile(
    r"\b(?:no|not on any|not taking any|takes no|taking no|on no|denies(?: taking)? any|does not take any)"
    r"\s+(?:current\s+|regular\s+|daily\s+|home\s+|prescription\s+|chronic\s+|routine\s+)?medications?\b"
    r"|\b(?:current\s+|home\s+)?medications?(?:\s+history)?\s*:\s*none\b", re.I)
NO_MEDICATIONS_TERM = "(no medications)"  # Passage.term of such a passage


def is_therapy(question: Question) -> bool:
    """Whether a boolean question asks about a drug the patient takes (see _THERAPY)."""
    return question.kind == "boolean" and bool(_THERAPY.search(question.phrase))


def parent_terms(question: Question) -> tuple[str, ...]:
    """Broader terms whose denial denies the question: "no history of diabetes" denies "type 1 diabetes
    mellitus". They never affirm it (a diabetes of no stated type is not type 1), so the reader reads
    their passages for a denial only."""
    if question.kind != "boolean" or question.phrase in _BUILTIN:
        return ()
    return _parent_terms(question.phrase)


@functools.lru_cache(maxsize=4096)
def _parent_terms(phrase: str) -> tuple[str, ...]:
    heads = (_typed_heads(t) for t in phrase_terms(phrase))
    return tuple(dict.fromkeys(h for typed in heads if typed for h in typed[1]))


# How notes write the vital signs, whatever the question calls them: a question on the systolic
# pressure is answered by "BP 151/102" (crit.engine.reading.reader reads the pair).
_VITAL_SIGN_TERMS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"\b(?:systolic|diastolic)\b", re.I), ("blood pressure", "BP", "B/P", "pressure")),
    (re.compile(r"\b(?:heart rate|pulse rate)\b", re.I), ("heart rate", "pulse", "HR")),
    (re.compile(r"\brespiratory rate\b", re.I), ("respiratory rate", "respirations", "respiration", "resp rate",
                                                "RR")),
    (re.compile(r"\btemperature\b", re.I), ("temperature", "temp", "Tmax", "T max")),
    (re.compile(r"\b(?:oxygen|O2) saturation\b", re.I), ("oxygen saturation", "O2 sat", "O2 saturation", "sat",
                                                       "saturation", "saturating", "SpO2", "pulse ox",
                                                       "pulse oximetry", "oximetry")),
)


def vital_sign_terms(phrase: str) -> tuple[str, ...]:
    """The words notes use for the vital sign a phrase names (none when it names none)."""
    return tuple(t for pattern, terms in _VITAL_SIGN_TERMS if pattern.search(phrase) for t in terms)


def question_terms(question: Question) -> tuple[str, ...]:
    """Every term that locates the question's evidence: phrase alternatives, aka, then the terms offline
    vocabularies add (crit.engine.reading.vocabulary: drug classes, brands, ICD-10-CM, ...), each once
    (case aside), less the file's `not aka` terms."""
    if question.phrase in _BUILTIN:
        return ()
    # Imported here: the vocabularies load their data on first use, and passages stays quick to import.
    from crit.engine.reading.vocabulary import enabled_vocabularies

    return _question_terms(question.phrase, tuple(question.aka), question.kind, tuple(question.not_aka),
                           enabled_vocabularies())


@functools.lru_cache(maxsize=1024)
def _question_terms(phrase: str, aka: tuple[str, ...], kind: str, not_aka: tuple[str, ...],
                    vocabularies: tuple[str, ...]) -> tuple[str, ...]:
    """question_terms, once per question (and vocabulary choice): it is asked for every note and passage."""
    from crit.engine.reading.vocabulary import expansions

    added = [e.term for e in expansions(phrase, aka, kind)]
    terms = [*phrase_terms(phrase), *aka, *vital_sign_terms(phrase), *added]
    seen = {t.lower() for t in not_aka}
    out: list[str] = []
    for term in terms:
        if term.lower() not in seen:
            seen.add(term.lower())
            out.append(term)
    return tuple(out)


# The numbers of a type or class, as notes write them ("type II diabetes", "class 3").
_NUMERALS = {"1": "(?:1|I|one)", "2": "(?:2|II|two)", "3": "(?:3|III|three)", "4": "(?:4|IV|four)",
             "i": "(?:1|I|one)", "ii": "(?:2|II|two)", "iii": "(?:3|III|three)", "iv": "(?:4|IV|four)"}


def _word_pattern(word: str, after: str = "") -> str:
    """One word of a term: an abbreviation (all capitals, or with periods) may carry a period after
    each letter; the number after "type", "class" or "stage" may be written in Roman numerals or in
    words; other words match as written."""
    if after.lower() in ("type", "class", "stage", "grade") and word.lower() in _NUMERALS:
        return _NUMERALS[word.lower()]
    letters = word.replace(".", "")
    if letters.isalpha() and (letters.isupper() or "." in word) and len(letters) <= 6 and len(letters) > 1:
        dotted = r"\.".join(re.escape(c) for c in letters) + r"\.?"  # "C.H.F." or "C.H.F"
        return f"(?:{re.escape(letters)}|{dotted})"
    return re.escape(word)


# A term is never the tail of a longer word, nor a word negated by its prefix ("insulin" is not in
# "non-insulin-dependent"); it may carry a plural or possessive ending ("platelets", "diagnoses").
_TERM_START = r"(?<![\w])(?<!\bnon-)(?<!\bnon )"
_TERM_END = r"(?:s|es|'s)?(?![\w])"


def _term_body(term: str) -> str:
    words = [w for w in re.split(r"[\s-]+", term.strip()) if w]
    # Words may stand apart by blanks, hyphens or a comma ("diabetes mellitus, type 2").
    return r",?[\s-]*".join(_word_pattern(w, words[i - 1] if i else "") for i, w in enumerate(words))


@functools.lru_cache(maxsize=4096)
def term_regex(term: str) -> re.Pattern[str]:
    """Case-insensitive, whole words, plural endings, hyphen or space between words."""
    return re.compile(_TERM_START + _term_body(term) + _TERM_END, re.I)


def _first_letter(term: str) -> str | None:
    """The letter or digit a match of `term` starts with, lower case; None when it is not an ASCII one."""
    first = term.strip().lstrip(".")[:1].lower()  # ".5" aside, an abbreviation's periods follow its letters
    return first if first.isascii() and first.isalnum() else None


def _by_letter(terms: Sequence[str]) -> dict[str, list[str]] | None:
    """A question's terms, longer first, grouped by the letter they start with (each group in that order);
    None when some term starts with anything else."""
    groups: dict[str, list[str]] = {}
    for term in sorted(dict.fromkeys(terms), key=len, reverse=True):
        letter = _first_letter(term)
        if letter is None:
            return None
        groups.setdefault(letter, []).append(term)
    return groups


def terms_pattern(terms: Sequence[str]) -> str:
    """One match of any of the terms, tried in the order given, as a pattern without flags (compile it with
    re.I, as terms_regex does)."""
    return _TERM_START + "(?:" + "|".join(_term_body(t) for t in terms) + ")" + _TERM_END


@functools.lru_cache(maxsize=4096)
def terms_regex(terms: tuple[str, ...]) -> re.Pattern[str]:
    """All of a question's terms in one pattern, so a note is scanned once per question, not once per term
    (a drug class has hundreds of names). Longer terms first: at one place the longest term wins."""
    ordered = sorted(dict.fromkeys(terms), key=len, reverse=True)
    letters = _by_letter(ordered)
    # Only a place whose letter starts some term can match: testing it first skips most of a note.
    guard = f"(?=[{''.join(letters)}])" if letters else ""
    return re.compile(guard + terms_pattern(ordered), re.I)


# Questions per compiled scanner: the scanner nests one conditional per question, and Python's regex
# parser recurses once per level.
SCAN_CHUNK = 40


class TermScanner:
    """Every question's terms found in one pass over a note: what scanning the note with each question's
    terms_regex in turn finds, a few times faster.

    The scanner tries only word starts. At each, it takes the branch of the letter found there, which
    holds one lookahead per question with a term of that letter, each trying that question's terms of
    that letter in the question's order. A term of another letter cannot match there, so each lookahead
    captures what the question's own pattern matches at that place; a question's matches are then kept
    left to right without overlap, as finditer keeps them. The spans are identical (tests/test_passages.py
    compares them over the MTSamples notes). A question with a term that starts with a symbol or a
    non-ASCII letter puts its chunk of questions in a single branch, tried at every word start."""

    def __init__(self, term_sets: Sequence[tuple[str, ...]]):
        self.size = len(term_sets)
        # Per chunk: the compiled pattern, and for each of its groups the question it captures for.
        self._chunks: list[tuple[re.Pattern[str], list[int]]] = []
        for first in range(0, self.size, SCAN_CHUNK):
            chunk = range(first, min(first + SCAN_CHUNK, self.size))
            grouped = {i: _by_letter(term_sets[i]) for i in chunk if term_sets[i]}
            branches: dict[str, list[tuple[int, list[str]]]] = {}
            if all(g is not None for g in grouped.values()):
                for i, groups in grouped.items():
                    assert groups is not None
                    for letter, terms in groups.items():
                        branches.setdefault(letter, []).append((i, terms))
            else:
                ordered = {i: sorted(dict.fromkeys(term_sets[i]), key=len, reverse=True) for i in grouped}
                branches[""] = list(ordered.items())
            owners: list[int] = []
            alternatives = []
            for letter, members in branches.items():
                looks, names = [], []
                for i, terms in members:
                    names.append(f"g{len(owners)}")
                    owners.append(i)
                    looks.append(f"(?=(?P<{names[-1]}>{terms_pattern(terms)}))?")
                # Zero-width, and only where some question matched: the conditionals fail where none did.
                none = "".join(f"(?({n})|" for n in names) + "(?!)" + ")" * len(names)
                alternatives.append((f"(?=[{letter}])" if letter else "") + "".join(looks) + none)
            if owners:
                self._chunks.append((re.compile(r"(?<![\w])(?:" + "|".join(alternatives) + ")", re.I), owners))

    def scan(self, text: str) -> list[list[tuple[int, int]]]:
        """Per term set, in order, the (start, end) of each match in `text`."""
        found: list[list[tuple[int, int]]] = [[] for _ in range(self.size)]
        ends = [0] * self.size  # where each question's last match ended: the next may not start before
        for pattern, owners in self._chunks:
            for m in pattern.finditer(text):
                for group, (start, end) in enumerate(m.regs[1:]):
                    if start >= 0 and start >= ends[owner := owners[group]]:
                        found[owner].append((start, end))
                        ends[owner] = end if end > start else start + 1
        return found


@functools.lru_cache(maxsize=64)
def term_scanner(term_sets: tuple[tuple[str, ...], ...]) -> TermScanner:
    """The scanner of a plan's questions, compiled once."""
    return TermScanner(term_sets)


def term_of(matched: str, terms: Sequence[str]) -> str:
    """Which of `terms` a match of terms_regex(terms) is (the first, in the question's order, that reads it)."""
    return next((t for t in terms if term_regex(t).fullmatch(matched)), terms[0])


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: lines split further at sentence ends; whitespace trimmed.
    A sentence longer than MAX_PASSAGE_CHARS is cut at its clause marks (";", ",")."""
    spans: list[tuple[int, int]] = []
    start = prev = 0  # where the sentence being read starts, and where its line or its last cut began
    for m in _CUT.finditer(text):
        end = m.end()
        if text[m.start()] == "\n":
            spans.extend(_bounded(text, start, m.start()))
            start = prev = end
        elif not _LIST_NUMBER.fullmatch(text, prev, end):
            # Not after a list number ("1. Diabetes. 2. Hypertension."): that period opens an item.
            spans.extend(_bounded(text, start, end))
            start = prev = end
    spans.extend(_bounded(text, start, len(text)))
    spans = [s for s in (_trim(text, a, b) for a, b in spans) if s[1] > s[0]]
    return _join_label_values(text, spans)


# A line that is only a label ("EJECTION FRACTION:"), then a line that is only a value ("72%.",
# "1.4 mg/dL", "55 to 60%"): a number, a unit, perhaps a second number, nothing else.
_LABEL_LINE = re.compile(r"[A-Za-z][A-Za-z0-9 /&()'-]{1,60}:")
_VALUE_LINE = re.compile(r"[<>~]?\s*\d+(?:\.\d+)?\s*(?:(?:-|to)\s*\d+(?:\.\d+)?)?\s*(?:%|[A-Za-z/^0-9µμ]{1,12})?\.?")


def _join_label_values(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join a label line with a value-only line after it, so "EJECTION FRACTION:\n 72%." is one
    sentence: a report's value on the line below its label belongs to it. A section header
    above a sentence, a list or a paragraph stays apart."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(spans):
        a, b = spans[i]
        if i + 1 < len(spans) and _LABEL_LINE.fullmatch(text, a, b):
            c, d = spans[i + 1]
            line_end = text.find("\n", d)
            whole_line = not text[d:line_end if line_end >= 0 else len(text)].strip()
            if text.count("\n", b, c) == 1 and whole_line and _VALUE_LINE.fullmatch(text, c, d):
                out.append((a, d))
                i += 2
                continue
        out.append((a, b))
        i += 1
    return out


def _bounded(text: str, start: int, end: int) -> list[tuple[int, int]]:
    if end - start <= MAX_PASSAGE_CHARS:
        return [(start, end)]
    out = []
    while end - start > MAX_PASSAGE_CHARS:
        window = text[start : start + MAX_PASSAGE_CHARS]
        cut = max(window.rfind("; "), window.rfind(", "), window.rfind(" "))
        cut = cut + 1 if cut > 0 else MAX_PASSAGE_CHARS
        out.append((start, start + cut))
        start += cut
    out.append((start, end))
    return out


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    body = piece.strip()
    if not body:
        return start, start
    head = len(piece) - len(piece.lstrip())
    return start + head, start + head + len(body)


class _Layout(NamedTuple):
    """A note's sentences and section headers, found once for all of its questions."""

    sentences: list[tuple[int, int]]
    starts: list[int]  # each sentence's start, to find the one a hit is in by bisection
    header_offsets: list[int]
    header_names: list[str]


@functools.lru_cache(maxsize=32)
def _layout(note_text: str) -> _Layout:
    spans = sentences(note_text)
    headers = [(m.start(), m.group(1).strip().upper()) for m in HEADER.finditer(note_text)]
    return _Layout(spans, [a for a, _ in spans], [o for o, _ in headers], [n for _, n in headers])


def _vocabularies() -> tuple[str, ...]:
    from crit.engine.reading.vocabulary import enabled_vocabularies

    return enabled_vocabularies()


@functools.lru_cache(maxsize=4096)
def _searched(phrase: str, aka: tuple[str, ...], kind: str, not_aka: tuple[str, ...],
              vocabularies: tuple[str, ...]) -> tuple[str, ...]:
    if phrase in _BUILTIN:
        return ()
    return (*_question_terms(phrase, aka, kind, not_aka, vocabularies),
            *(_parent_terms(phrase) if kind == "boolean" else ()))


def searched_terms(question: Question) -> tuple[str, ...]:
    """The terms a question's passages are found by: its own, then the parents only a denial reads."""
    return _searched(question.phrase, tuple(question.aka), question.kind, tuple(question.not_aka), _vocabularies())


@functools.lru_cache(maxsize=64)
def _term_sets(questions: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...]], ...],
               vocabularies: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """searched_terms of each question (phrase, aka, kind, not aka), found once a plan, not once a note."""
    return tuple(_searched(*question, vocabularies) for question in questions)


def find_passages(note_text: str, question: Question) -> list[Passage]:
    """The sentences of `note_text` that mention `question`, in note order, one per sentence
    (the first term found in it). Empty when the note never mentions the question."""
    return evidence_for(note_text, [question])[question.name]


def _led_by(regex: re.Pattern[str], letters: str) -> re.Pattern[str]:
    """`regex`, every match of which starts a word with one of `letters`, tried only at such places: the
    same matches, found without trying every character."""
    return re.compile(f"(?<![\\w])(?=[{letters}])(?:{regex.pattern})", regex.flags)


# The pattern families, as evidence_for scans for them: each match starts with one of these characters.
FAMILY_SCANS = {
    AGE: _led_by(AGE, r"\da"),
    _SEX_WORDS[0]: _led_by(_SEX_WORDS[0], "sfhwlgm"),
    _SEX_WORDS[1]: _led_by(_SEX_WORDS[1], "hmgb"),
    NO_MEDICATIONS: _led_by(NO_MEDICATIONS, "ntodchm"),
}


def evidence_for(note_text: str, questions: Sequence[Question]) -> dict[str, list[Passage]]:
    """Passages per question name, for every question over one note: the note is scanned once for every
    question's terms (TermScanner), and its sentences and headers found once."""
    searched = _term_sets(tuple((q.phrase, tuple(q.aka), q.kind, tuple(q.not_aka)) for q in questions),
                          _vocabularies())
    term_hits = term_scanner(searched).scan(note_text)
    shared: dict[re.Pattern[str], list[tuple[int, int, str]]] = {}  # families several questions use: one scan
    out: dict[str, list[Passage]] = {}
    for q, terms, spans in zip(questions, searched, term_hits):
        hits = [(a, b, "") for a, b in spans]
        families = ([(_BUILTIN_TERM[q.phrase], r) for r in _BUILTIN[q.phrase]] if q.phrase in _BUILTIN
                    else [(NO_MEDICATIONS_TERM, NO_MEDICATIONS)] if is_therapy(q) else [])
        for term, regex in families:
            if regex not in shared:
                shared[regex] = [(m.start(), m.end(), term) for m in FAMILY_SCANS[regex].finditer(note_text)]
            hits.extend(shared[regex])
        out[q.name] = passages_of(note_text, sorted(hits), terms)
    return out


def passages_of(note_text: str, hits: list[tuple[int, int, str]], terms: tuple[str, ...]) -> list[Passage]:
    """The passages of a question's sorted hits (start, end, family name or "" for a term): the sentence
    each first hit sits in, with its section; sentences of one line that follow each other joined."""
    if not hits:
        return []
    layout = _layout(note_text)
    # The sentence each hit starts in (hits in whitespace between sentences are in none), and the first
    # hit of each: the sentences in note order, as hits are sorted by where they start.
    first_hits: dict[int, tuple[int, int, str]] = {}
    for hit in hits:
        i = bisect.bisect_right(layout.starts, hit[0]) - 1
        if i >= 0 and hit[0] < layout.sentences[i][1] and i not in first_hits:
            first_hits[i] = hit
    passages: list[Passage] = []
    for i, (term_start, term_end, term) in first_hits.items():
        start, end = layout.sentences[i]
        term = term or term_of(note_text[term_start:term_end], terms)
        header = bisect.bisect_right(layout.header_offsets, term_start) - 1  # the last header above the term
        section = layout.header_names[header] if header >= 0 else None
        last = passages[-1] if passages else None
        if (last and last.section == section and "\n" not in note_text[last.end : start]
                and end - last.start <= MAX_PASSAGE_CHARS):
            # Consecutive sentences of one line that both mention the question are one passage
            # ("No TIA. No CVA."): the evidence reads as one quote.
            passages[-1] = last.model_copy(update={"end": end})
            continue
        passages.append(Passage(start=start, end=end, term=term, term_start=term_start,
                                term_end=min(term_end, end), section=section))
    return passages
