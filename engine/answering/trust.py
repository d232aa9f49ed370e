"""Trust: where a model's answer decides instead of the rules', as measured for that model.

A trust profile is measured (`crit calibrate`, crit.trainer.calibrate) by answering labelled notes with
both the rules and a model, and counting, in each cell (the question's kind x the rules' reading class,
e.g. boolean/named, numeric/value-after-term), the pairs where the model was right and the rules wrong
(wins) and the reverse (losses). A cell trusts the model only where its wins beat its losses by a
one-sided exact sign test at the 5% level: a model that is as often right as the rules, or that was seen
too rarely to tell, never decides. Everywhere else the rules' answer stands, and where no cell trusts the
model the run never loads it.

A profile names the backend identity, reader and evidence versions it was measured with: those decide
what the model is shown and what the rules read, so a profile of another model or reader is refused.
Models shipped with crit ship their profile (`trust_profiles/*.json` beside this file); `crit run --trust FILE`
takes another. Without a profile the run keeps the conservative policy: the model is asked where the
rules are unsure, and its answer stands only where the rules, reading its quote, agree.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from crit.grammar.errors import CritError

SHIPPED = Path(__file__).resolve().parent / "trust_profiles"
ALPHA = 0.05  # one-sided: the chance that a model no better than the rules would look this much better


class Cell(BaseModel):
    """One kind of question read one way by the rules, and how the model and the rules did on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["boolean", "numeric"]
    reading: str  # the rules' reading class (Answer.reading); "none" where the rules name none
    pairs: int  # labelled (note, question) pairs in the cell
    model_right: int
    rules_right: int
    wins: int  # the model right, the rules wrong
    losses: int  # the rules right, the model wrong
    p_value: float  # one-sided exact sign test of wins against losses
    decides: Literal["model", "rules"]


class TrustProfile(BaseModel):
    """Per cell, whether the model's answer decides; measured for one backend identity and one reader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend_identity: str
    reader: str  # READER_VERSION the rules answered with
    evidence: str  # EVIDENCE_VERSION of the passages the model was shown
    measured_on: list[str]  # the labelled sets, e.g. "tests/gold dev: 22 notes, 220 pairs"
    alpha: float = ALPHA
    cells: list[Cell]

    def decides(self, kind: str, reading: str | None) -> bool:
        """Whether the model's answer decides a question of this kind the rules read this way."""
        return (kind, reading or "none") in self._trusted()

    def _trusted(self) -> frozenset[tuple[str, str]]:
        return frozenset((c.kind, c.reading) for c in self.cells if c.decides == "model")

    @property
    def ever_trusted(self) -> bool:
        return bool(self._trusted())

    def fingerprint(self) -> str:
        """What changes answers: the cells the model decides (part of every answer key of a run)."""
        decided = sorted(f"{k}/{r}" for k, r in self._trusted())
        return hashlib.sha256(json.dumps([self.backend_identity, decided]).encode()).hexdigest()[:12]

    def measured(self) -> str:
        """Where the profile was measured, in a few words: "678 labelled pairs in 6 sets"."""
        return f"{sum(c.pairs for c in self.cells)} labelled pairs in {len(self.measured_on)} sets"

    def describe(self) -> str:
        trusted = sorted(f"{k}/{r}" for k, r in self._trusted())
        if not trusted:
            return f"the model decides nowhere: its trust profile never measured it better than the rules ({self.measured()})"
        return (f"the model decides {', '.join(trusted)}, where its trust profile measured it better than the rules "
                f"({self.measured()})")


def sign_test(wins: int, losses: int) -> float:
    """P(at least `wins` of wins + losses) for a fair coin: how often a model no better than the rules
    would win this often where the two disagree."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def cell(kind: str, reading: str | None, outcomes: list[tuple[bool, bool]], alpha: float = ALPHA) -> Cell:
    """A cell from its (model right, rules right) pairs."""
    wins = sum(m and not r for m, r in outcomes)
    losses = sum(r and not m for m, r in outcomes)
    p = sign_test(wins, losses)
    return Cell(kind=kind, reading=reading or "none", pairs=len(outcomes), model_right=sum(m for m, _ in outcomes),  # type: ignore[arg-type]
                rules_right=sum(r for _, r in outcomes), wins=wins, losses=losses, p_value=round(p, 6),
                decides="model" if wins > losses and p <= alpha else "rules")


def load_profile(path: str | Path) -> TrustProfile:
    """A profile from its JSON file; CritError saying what is wrong and where."""
    p = Path(path)
    try:
        return TrustProfile.model_validate_json(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise CritError(f"cannot read the trust profile '{path}': {e.strerror or e}") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the file"
        raise CritError(f"'{path}' is not a trust profile: {where}: {first['msg']} "
                        "(write one with `crit calibrate`)") from None


def check_profile(profile: TrustProfile, backend_identity: str, reader: str, evidence: str, source: str) -> None:
    """CritError unless the profile was measured for this backend, reader and evidence."""
    for what, measured, running in (("backend", profile.backend_identity, backend_identity),
                                    ("reader", profile.reader, reader), ("evidence", profile.evidence, evidence)):
        if measured != running:
            raise CritError(f"the trust profile {source} was measured for {what} '{measured}', and this run's is "
                            f"'{running}': measure this one with `crit calibrate`, or run without --trust")


def shipped_profile(backend_identity: str, reader: str, evidence: str) -> TrustProfile | None:
    """The profile shipped for this backend identity and reader, if crit ships one."""
    for path in sorted(SHIPPED.glob("*.json")):
        profile = load_profile(path)
        if (profile.backend_identity, profile.reader, profile.evidence) == (backend_identity, reader, evidence):
            return profile
    return None


def profile_for(backend_identity: str, choice: str | Path | None) -> TrustProfile | None:
    """The profile a run uses: `choice` None takes the one crit ships for this backend (if any), "none"
    takes none (the conservative policy), anything else is a profile file, checked against the backend."""
    from crit.engine.reading.passages import EVIDENCE_VERSION
    from crit.engine.reading.reader import READER_VERSION

    if choice is None:
        return shipped_profile(backend_identity, READER_VERSION, EVIDENCE_VERSION)
    if str(choice) == "none":
        return None
    profile = load_profile(choice)
    check_profile(profile, backend_identity, READER_VERSION, EVIDENCE_VERSION, f"'{choice}'")
    return profile
