"""Reading: find what a note says about each question, and answer it by rule, with no model.

Takes a note's text and a plan's questions (crit.grammar.questions); gives, per question,
its passages (the sentences that mention it, with spans) and the reader's answer over them,
marked sure or not.

- passages: the sentences or lines of a note that mention a question's terms;
- context: whether a mention is negated, possible, hypothetical or about someone else
  (its cues are data: context_cues.json);
- reader: the answer a rule reads from the passages (`--backend rules` alone, and the
  first answerer of the default policy).
"""
