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
from typing import Any

from pydantic import BaseModel

MAX_SCOPE_TOKENS = 6  # hypothetical, family and possible cues: NegEx's window of about five words

_HYPOTHETICAL = {
    "pseudo_negations": [],
    "preceding_negations": [
        "rule out", "r/o", "to rule out", "risk of", "risk for", "at risk", "if", "evaluate for",
        "evaluation for", "concern for", "screen for", "screening for", "prophylaxis", "prevent",
        "prevention of", "in case of", "should she develop", "should he develop", "return for",
        "unknown whether", "unknown if", "whether", "not known if", "not known whether",
    ],
    "following_negations": ["prophylaxis", "was not excluded"],
    "termination": ["but", "however", "although", "though", "which", "with", "and"],
}
# A patient's relatives, as notes name them (also crit.engine.reading.reader: a relative's descriptor).
RELATIVES = ("mother", "father", "brother", "sister", "son", "daughter", "grandmother", "grandfather", "aunt",
             "uncle", "sibling", "siblings", "parents", "cousin", "mom", "dad")
_FAMILY = {
    "pseudo_negations": [],
    "preceding_negations": ["family history", "family hx", "fhx", "fh", *RELATIVES, "maternal", "paternal"],
    "following_negations": ["in the family", "runs in the family", "in her mother", "in his mother",
                            "in her father", "in his father"],
    "termination": ["but", "however", "patient", "she", "he", "himself", "herself"],
}
# Cues NegEx's clinical termset lacks, common in review-of-systems lines.
_MORE_NEGATIONS = ["nothing supportive of", "nothing suggestive of", "nothing to suggest", "specifically denies"]
_POSSIBLE = ("possible", "questionable", "suspected", "suspicion of", "probable", "likely", "presumed",
             "cannot be excluded", "may have", "might have", "?")
_FAMILY_SECTIONS = ("FAMILY HISTORY", "FAMILY HX", "FAMILY MEDICAL HISTORY")


class Context(BaseModel):
    negated: bool = False
    hypothetical: bool = False
    family: bool = False
    possible: bool = False

    @property
    def about_patient(self) -> bool:
        """Whether the mention states something of the patient (not a relative, not a what-if)."""
        return not (self.hypothetical or self.family)


@functools.lru_cache(maxsize=1)
def _pipeline() -> tuple[Any, Any, Any, Any]:
    """spaCy's blank English and three negex matchers (negation, hypothetical, family), built once."""
    import spacy
    from negspacy.negation import Negex
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    negation_terms = termset("en_clinical").get_patterns()
    negation_terms["preceding_negations"] = [*negation_terms["preceding_negations"], *_MORE_NEGATIONS]
    negation = Negex(nlp, "negation", negation_terms, extension_name="crit_negated")
    hypothetical = Negex(nlp, "hypothetical", _HYPOTHETICAL, extension_name="crit_hypothetical")
    family = Negex(nlp, "family", _FAMILY, extension_name="crit_family")
    return nlp, negation, hypothetical, family


def _cued(negex: Any, doc: Any, target: Any, scope: int | None) -> bool:
    """NegEx over one target span: a preceding cue within `scope` tokens (any distance when None)
    inside the target's termination boundary, or a following cue right after it."""
    preceding, following, terminating = negex.process_negations(doc)
    for low, high in negex.termination_boundaries(doc, terminating):
        if not (low <= target.start < high):
            continue
        for _, start, end in preceding:
            if low <= start < high and end <= target.start and (scope is None or target.start - end <= scope):
                return True
        for _, start, _end in following:
            if low <= start < high and start >= target.end and start - target.end <= 2:
                return True
    return False


def read_context(passage_text: str, term_start: int, term_end: int, section: str | None = None) -> Context:
    """The context of the term at [term_start, term_end) of `passage_text` (offsets into the passage)."""
    nlp, negation, hypothetical, family = _pipeline()
    doc = nlp(passage_text)
    target = doc.char_span(term_start, term_end, alignment_mode="expand")
    if target is None:  # a term that spaCy cannot align (never seen; be explicit rather than guess)
        return Context()
    before = passage_text[:term_start].lower()
    window = " ".join(before.split()[-MAX_SCOPE_TOKENS:])
    in_family_section = section is not None and any(section.startswith(s) for s in _FAMILY_SECTIONS)
    return Context(
        negated=_cued(negation, doc, target, None),
        hypothetical=_cued(hypothetical, doc, target, MAX_SCOPE_TOKENS),
        family=in_family_section or _cued(family, doc, target, MAX_SCOPE_TOKENS),
        possible=any(p in window.split() or (" " in p and p in window) for p in _POSSIBLE),
    )
