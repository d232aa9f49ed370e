"""Policy: reach each answer of a note by the cheapest sure way: the gate, the reader, then a model.

For one note and the questions it still needs:
1. the passages (crit.engine.reading.passages) of each question are found;
2. the gate: a question no passage mentions is "not mentioned" (method 'gate'), with no
   model call, unless the question says `gate off` or the run says `--no-gate`;
3. the reader (crit.engine.reading.reader) answers the rest (method 'rules');
4. a model, when the run has one, is asked only where the policy says, over the passages of
   the questions asked (crit.engine.answering.view), never the whole note.

Policies:
- "rules": the reader's answer always;
- "model": the model's answer wherever a passage exists (gate + model);
- "rules-then-model" (the default): with a trust profile for the model (crit.engine.answering.trust),
  the model is asked exactly where the profile measured it better than the rules (a kind of question
  read one way by the rules), and there its answer decides when it is valid and, stating
  something, grounded; elsewhere the rules' answer stands, and a profile that trusts the model
  nowhere loads no model. Without a profile: the model only where the reader is not sure, and its
  answer replaces the reader's only when it may stand (crit.engine.answering.checks): it is
  valid and states something, its quote is verbatim in a passage and writes its number,
  the reader, reading that quote alone, has no objection, and it does not deny what the
  reader found present in the note. Why each rule exists, with its figures:
  benchmarks/RESULTS.md, "Evidence-first" and the combine-2 to combine-4 sections.

    engine = EvidenceEngine(start_model=factory.create)
    answers, passages = engine.answer("n1", note_text, plan.model_questions)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

from crit.engine.answering import DEFAULT_POLICY, POLICIES, Policy
from crit.engine.answering.backend import Backend, Request
from crit.engine.answering.backends.rules import RulesBackend
from crit.engine.answering.checks import NOTE_AFFIRMS, checked, objection
from crit.engine.answering.trust import TrustProfile
from crit.engine.answering.view import model_request
from crit.engine.answers import Answer
from crit.engine.reading.passages import EVIDENCE_VERSION, Passage, evidence_for
from crit.grammar.questions import Question

# 2: a model answer must pass `objection`; 3: nor deny what the rules found present; 4: nor read a
# patient's sex from a passage that names both sexes
COMBINE_VERSION = "combine-4"
def engine_identity(backend_identity: str, *, gate: bool, policy: Policy, trust: TrustProfile | None = None,
                    infer: bool = False) -> str:
    """The identity every answer key of a run hashes: the model, how evidence is found, the policy (with
    the cells a trust profile gives the model), and whether the gate was on, so answers reached one way
    are never reused for another."""
    from crit.engine.reading.reader import READER_VERSION

    mode = ("gate" if gate else "no-gate") + ("+infer" if infer else "")
    how = f"trust-{trust.fingerprint()}" if trust is not None and policy == "rules-then-model" else policy
    return f"{backend_identity}|{EVIDENCE_VERSION}|{READER_VERSION}|{COMBINE_VERSION}:{how}|{mode}"


def decided(m: Answer, rules: Answer) -> Answer:
    """The answer a run takes where the model decides (a cell its trust profile trusts, or a whole-note
    inference): the model's, unless it is an error or states something in words that are not the note's;
    then the rules' (for an inference, the gate's, whose "not mentioned" an inferred one only repeats)."""
    if m.error is not None or (not m.na and not m.grounded):
        return rules
    return rules if m.na and m.method == "model-inferred" else m


_NOT_MENTIONED = json.dumps({"answer": "not mentioned"})


def gate_answer(note_id: str, question: Question) -> Answer:
    return Answer(note_id=note_id, question=question.name, fingerprint="", raw=_NOT_MENTIONED, latency_s=0.0,
                  prompt_tokens=0, output_tokens=0, na=True, method="gate", confident=True, reading="no-mention")


class Staged(NamedTuple):
    """One note's questions before the model: what the gate and the rules answered, and what is left open."""

    request: Request
    evidence: dict[str, list[Passage]]  # each question's passages
    gated: dict[str, Answer]  # the gate's "not mentioned", by question (no passage names it)
    open_questions: list[Question]  # the rest, which the rules answered
    rules: dict[str, Answer]  # the rules' answers to the open questions


class EvidenceEngine:
    """Answers the questions of one note: gate, rules, then the model where the policy says."""

    def __init__(self, model: Backend | None = None, *, start_model: Callable[[], Backend] | None = None,
                 gate: bool = True, policy: Policy = DEFAULT_POLICY, trust: TrustProfile | None = None,
                 infer: bool = False):
        """`model`: a started backend; or `start_model`, which starts one only when a question first
        needs it, so a run the rules answer whole loads no model. Neither: the rules alone. `trust`:
        the model's measured profile, which decides where it is asked under "rules-then-model". `infer`:
        every boolean question as if the file said `infer`."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        self.model = model
        self._start = start_model
        self.gate = gate
        self.infer = infer
        self.policy: Policy = policy if (model or start_model) is not None else "rules"
        self.trust = trust if self.policy == "rules-then-model" else None
        if self.trust is not None and not self.trust.ever_trusted:
            self.policy, self.trust = "rules", None  # measured never better: the model is never asked
        self.rules = RulesBackend()
        self.model_calls = 0  # notes sent to the model
        self.model_questions = 0  # questions sent to the model (its answer may not be kept)
        self.overruled: Counter[str] = Counter()  # model answers the rules' reading of their quote refused, by reason

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> tuple[list[Answer], dict[str, list[Passage]]]:
        """One Answer per question (in order, `fingerprint` left for the caller to set) and the passages."""
        return self.answer_batch([Request(note_id, note_text, questions)])[0]

    def answer_batch(self, requests: Sequence[Request]) -> list[tuple[list[Answer], dict[str, list[Passage]]]]:
        """`answer` for many notes: the model, where needed, gets all their requests in one call, so a
        server or vLLM backend keeps them in flight together."""
        out = []
        for (r, evidence, final, open_questions, rules), from_model in self._ask(requests):
            final = dict(final)  # the gate's answers; the open questions' and inferred ones join them
            for q in open_questions:
                m = from_model.get(q.name)
                if self.policy == "model" and m is not None:
                    final[q.name] = m
                elif self.trust is not None and m is not None:
                    # Where the model was measured better it decides, but never with an error or a quote
                    # that is not the note's own words.
                    final[q.name] = decided(m, rules[q.name])
                elif (m is not None and m.error is None and not m.na and m.grounded
                      and self._supported(m, q, r.text, evidence, rules[q.name])):
                    final[q.name] = m
                else:
                    final[q.name] = rules[q.name]
            for name, m in from_model.items():
                if m.method == "model-inferred":
                    final[name] = decided(m, final[name])
            out.append(([final[q.name] for q in r.questions], evidence))
        return out

    def compare_batch(self, requests: Sequence[Request]) -> list[dict[str, tuple[Answer, Answer | None]]]:
        """Per note, each question's answer by the rules (or the gate) and by the model where it was asked
        (None elsewhere; for a gate pair, its inferred answer where the note was read whole), side by side:
        what `crit calibrate` scores against labels."""
        out = []
        for (r, _evidence, gated, _open, rules), from_model in self._ask(requests):
            out.append({q.name: (gated.get(q.name) or rules[q.name], from_model.get(q.name)) for q in r.questions})
        return out

    def _ask(self, requests: Sequence[Request]) -> list[tuple[Staged, dict[str, Answer]]]:
        """Per note: what was staged for it (Staged), and the model's checked answers to the questions the
        policy asked of it, by question name."""
        staged: list[Staged] = []
        to_model: list[Request] = []
        mapping: list[tuple[int, list[tuple[int, int, int]], list[Question]]] = []
        for r in requests:
            evidence = evidence_for(r.text, r.questions)
            final: dict[str, Answer] = {}
            open_questions = []
            for q in r.questions:
                if self.gate and q.gate and not evidence[q.name]:
                    final[q.name] = gate_answer(r.note_id, q)
                else:
                    open_questions.append(q)
            rules = {a.question: a for a in self.rules.answer(r.note_id, r.text, open_questions, evidence)}
            if self.policy == "model":
                ask = open_questions
            elif self.trust is not None:
                ask = [q for q in open_questions if self.trust.decides(q.kind, rules[q.name].reading)]
            elif self.policy == "rules-then-model":
                ask = [q for q in open_questions if not rules[q.name].confident]
            else:
                ask = []
            if ask:
                view, pieces, asked = model_request(r.text, ask, evidence)
                to_model.append(Request(r.note_id, view, asked))
                mapping.append((len(staged), pieces, asked))
            infer = [q for q in r.questions if q.name in final and self._may_infer(q)]
            if infer:  # no passage names them: the model reads the whole note, its own request (note first)
                to_model.append(Request(r.note_id, r.text, infer))
                mapping.append((len(staged), [(0, 0, len(r.text))], infer))
            staged.append(Staged(r, evidence, final, open_questions, rules))
        from_model: dict[int, dict[str, Answer]] = {}
        if to_model:
            if self.model is None and self._start is not None:
                self.model = self._start()
            assert self.model is not None
            self.model_calls += len(to_model)
            self.model_questions += sum(len(m.questions) for m in to_model)
            for (i, pieces, asked), answers in zip(mapping, self.model.answer_batch(to_model)):
                note_text, gated = staged[i].request.text, staged[i].gated
                for q, a in zip(asked, answers):
                    m = checked(a, q, pieces, note_text)
                    from_model.setdefault(i, {})[q.name] = (m.model_copy(update={"method": "model-inferred"})
                                                            if q.name in gated else m)
        return [(stage, from_model.get(i, {})) for i, stage in enumerate(staged)]

    def _may_infer(self, q: Question) -> bool:
        """Whether a boolean question no passage names is asked of the model over the whole note: it or the run
        says `infer`, and the model is asked everything (--policy model) or measured better there."""
        if q.kind != "boolean" or not (q.infer or self.infer):
            return False
        return self.policy == "model" or (self.trust is not None and self.trust.decides("boolean", "no-mention"))

    def _supported(self, m: Answer, q: Question, note_text: str, evidence: dict[str, list[Passage]],
                   by_rules: Answer) -> bool:
        assert m.span_start is not None and m.span_end is not None  # grounded
        label = ("present" if m.value == 1.0 else "absent") if q.kind == "boolean" else None
        reason = objection(q, label, m.value, (m.span_start, m.span_end), note_text, evidence[q.name])
        if reason is None and label == "absent" and by_rules.value == 1.0 and not by_rules.na and by_rules.error is None:
            # The rules read the finding affirmed somewhere in the note: a denial elsewhere ("no
            # symptoms of CHF", "no prior history of heart failure", the patient's own "I don't have
            # diabetes") does not undo a stated diagnosis, as across notes present beats absent.
            reason = NOTE_AFFIRMS
        if reason is not None:
            self.overruled[reason] += 1
        return reason is None

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
