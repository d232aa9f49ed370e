"""Context: is a mention of a finding negated, hypothetical, or about the family? (negspacy's NegEx)

A passage that names "diabetes" may deny it ("no history of diabetes"), raise it as a
possibility ("rule out stroke") or give it to a relative ("mother had a stroke"). This
module reads those three contexts around one term in one passage:

- negated: negspacy's clinical termset and scope (pseudo-negations such as "no increase"
  filtered out; a preceding cue reaches every finding after it in its sentence until a
  termination term such as "but"), plus a few review-of-systems cues it lacks. Its scope
  is not cut at a few tokens, because review-of-systems lines deny long lists
  ("Specifically denies chest pain, heart attack, ..., diabetes"; benchmarks/RESULTS.md);
- hypothetical ("rule out", "risk of", "if", "evaluate for") and family ("mother",
  "family history of") use the same matcher with termsets of their own, and a passage
  under a FAMILY HISTORY header is always family;
- possible ("possible", "questionable", "suspected") is reported, not acted on: the
  gold rules (tests/gold/README.md) count "history of questionable TIA" as present.

Tokenisation is spaCy's blank English tokenizer; no model is loaded.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

CUES_FILE = Path(__file__).with_name("context_cues.toml")


class Termset(BaseModel):
    """One NegEx termset: cues before and after a finding, and the terms that end a cue's reach."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preceding: tuple[str, ...] = ()
    following: tuple[str, ...] = ()
    termination: tuple[str, ...] = ()
    # Regular expressions over a whole sentence: one that matches puts every finding in it in context
    # ("the risks of bleeding and DVT were explained").
    sentences: tuple[str, ...] = ()

    def patterns(self, extra_preceding: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """The termset as negspacy takes it."""
        return {"pseudo_negations": [], "preceding_negations": [*self.preceding, *extra_preceding],
                "following_negations": list(self.following), "termination": list(self.termination)}


class SectionCues(Termset):
    """A termset whose context a whole section also gives (FAMILY HISTORY, ALLERGIES)."""

    sections: tuple[str, ...] = ()


class FamilyCues(SectionCues):
    relatives: tuple[str, ...] = ()


class Cues(BaseModel):
    """The context cues of one cue file (context_cues.toml is the reader's own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope_tokens: int
    negated: Termset
    hypothetical: Termset
    family: FamilyCues
    stopped: Termset
    allergy: SectionCues
    possible: Termset


def load_cues(path: Path = CUES_FILE) -> Cues:
    """The cues of a TOML cue file (raises pydantic's ValidationError on a misspelt key)."""
    return Cues.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))


DEFAULT_CUES = load_cues()
# A patient's relatives, as notes name them (also crit.engine.reading.reader: a relative's descriptor).
RELATIVES = DEFAULT_CUES.family.relatives


class Context(BaseModel):
    negated: bool = False
    hypothetical: bool = False
    family: bool = False
    possible: bool = False
    stopped: bool = False  # the drug or habit has stopped: not current, still history
    allergy: bool = False  # named as an allergy: not taken, not a finding

    @property
    def about_patient(self) -> bool:
        """Whether the mention states something of the patient (not a relative, not a what-if, not an allergy)."""
        return not (self.hypothetical or self.family or self.allergy)


def _import_spacy() -> Any:
    """spaCy, imported without torch where torch is not loaded yet. spaCy's thinc imports torch whenever it
    is installed, which takes one to several seconds, yet the tokenizer and sentencizer read here never use
    it; so for the import alone torch is made to look absent, and a later `import torch` works as usual."""
    import sys

    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError meanwhile
    try:
        import spacy
    finally:
        del sys.modules["torch"]
    return spacy


@functools.lru_cache(maxsize=4)
def _pipeline(cues: Cues) -> tuple[Any, dict[str, Any], tuple[re.Pattern[str], ...]]:
    """spaCy's blank English and five negex matchers (negation, hypothetical, family, stopped, allergy), built
    once a cue set."""
    spacy = _import_spacy()
    from negspacy.negation import Negex
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    negation_terms = termset("en_clinical").get_patterns()
    negation_terms["preceding_negations"] = [*negation_terms["preceding_negations"], *cues.negated.preceding]
    negation_terms["following_negations"] = [*negation_terms["following_negations"], *cues.negated.following]
    # Each cue set names its own token extensions: two cue sets in one process never share a flag.
    tag = f"{hash(cues) & 0xFFFFFFFF:08x}"
    negation = Negex(nlp, "negation", negation_terms, extension_name=f"crit_negated_{tag}")
    hypothetical = Negex(nlp, "hypothetical", cues.hypothetical.patterns(), extension_name=f"crit_hypothetical_{tag}")
    family = Negex(nlp, "family", cues.family.patterns(cues.family.relatives), extension_name=f"crit_family_{tag}")
    stopped = Negex(nlp, "stopped", cues.stopped.patterns(), extension_name=f"crit_stopped_{tag}")
    allergy = Negex(nlp, "allergy", cues.allergy.patterns(), extension_name=f"crit_allergy_{tag}")
    sentences = tuple(re.compile(x, re.I) for x in cues.hypothetical.sentences)
    matchers = {"negated": negation, "hypothetical": hypothetical, "family": family, "stopped": stopped,
                "allergy": allergy}
    return nlp, matchers, sentences


class _Cues(NamedTuple):
    """One matcher's cues over one passage: where each cue is and the spans its cues reach within."""

    preceding: list[tuple[Any, int, int]]
    following: list[tuple[Any, int, int]]
    boundaries: list[tuple[int, int]]


@functools.lru_cache(maxsize=2048)
def _analysed(passage_text: str, cues: Cues) -> tuple[Any, dict[str, _Cues], bool]:
    """The passage's tokens and every matcher's cues, once a passage: a sentence is read for each question
    that mentions it, and each of its terms."""
    nlp, matchers, what_if_sentences = _pipeline(cues)
    doc = nlp(passage_text)
    found = {}
    for name, negex in matchers.items():
        preceding, following, terminating = negex.process_negations(doc)
        found[name] = _Cues(preceding, following, negex.termination_boundaries(doc, terminating))
    return doc, found, any(r.search(passage_text) for r in what_if_sentences)


def _cued(found: _Cues, target: Any, scope: int | None) -> bool:
    """NegEx over one target span: a preceding cue within `scope` tokens (any distance when None)
    inside the target's termination boundary, or a following cue right after it."""
    for low, high in found.boundaries:
        if not (low <= target.start < high):
            continue
        for _, start, end in found.preceding:
            if low <= start < high and end <= target.start and (scope is None or target.start - end <= scope):
                return True
        for _, start, _end in found.following:
            if low <= start < high and start >= target.end and start - target.end <= 2:
                return True
    return False


def read_context(passage_text: str, term_start: int, term_end: int, section: str | None = None,
                 cues: Cues = DEFAULT_CUES) -> Context:
    """The context of the term at [term_start, term_end) of `passage_text` (offsets into the passage)."""
    doc, found, what_if_sentence = _analysed(passage_text, cues)
    target = doc.char_span(term_start, term_end, alignment_mode="expand")
    if target is None:  # a term that spaCy cannot align (never seen; be explicit rather than guess)
        return Context()
    before = passage_text[:term_start].lower()
    window = " ".join(before.split()[-cues.scope_tokens:])
    scope = cues.scope_tokens
    return Context(
        negated=_cued(found["negated"], target, None),
        hypothetical=_cued(found["hypothetical"], target, scope) or what_if_sentence,
        family=_in_section(section, cues.family) or _cued(found["family"], target, scope),
        possible=any(p in window.split() or (" " in p and p in window) for p in cues.possible.preceding),
        stopped=_cued(found["stopped"], target, scope),
        allergy=_in_section(section, cues.allergy) or _cued(found["allergy"], target, scope),
    )


def _in_section(section: str | None, cues: SectionCues) -> bool:
    return section is not None and any(section.startswith(s) for s in cues.sections)
