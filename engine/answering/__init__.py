"""Answering: one answer per (note, question), reached by the policy: the gate, the reader, a model.

Takes notes and their questions; gives Answer rows (crit.engine.answers), each with its method
(gate, rules, model), its quote's span in the note, and its passages.

- policy: who answers what (EvidenceEngine), and the identity every answer key hashes;
- view, checks: what a model reads of a note, and whether its answer may stand;
- backend, registry, backends/: the backend protocol, and one file per backend (rules,
  transformers, openai, vllm, ray), found by name;
- model, prompts, chunks, constraints, decoding, shared_prefix, payloads: the model runtime
  (loading, chat prompts, long notes cut into chunks, constrained decoding, server requests).
"""

from typing import Literal

# Who answers a question that has passages (crit.engine.answering.policy); here, at the stage's door,
# so that the command line can offer the choices without importing the answering code.
Policy = Literal["rules", "model", "rules-then-model"]
POLICIES: tuple[str, ...] = ("rules", "model", "rules-then-model")
DEFAULT_POLICY: Policy = "rules-then-model"
