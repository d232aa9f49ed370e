"""What constrained generation may write for an answer schema: a fixed JSON layout.

Every answer schema crit generates under is a flat JSON object whose keys are all required
and come in a fixed order (crit.grammar.questions, crit.trainer.synth). Its text is therefore
fixed literals around model-written values, laid out as json.dumps writes it:

    {"status": "stated", "answer": 12.5, "unit": "g/dL", "source": "Hgb 12.5"}
    `{"status":`  ` "stated",`  ` "answer":`  ` 12.5,`  ` "unit":`  ...  ` "Hgb 12.5"}`
     literal 0     value 0       literal 1     value 1

Why a fixed layout rather than outlines' default regex: the default allows an optional space
around every `{`, `:` and `,`, and a small model spends tokens on them (`{ "status" :`);
and a backend that knows the literals can feed them to the model as whole tokens instead of
decoding them one forward pass at a time (crit.engine.answering.decoding). Each value regex
ends with the delimiter after it (`,` or `}`) so the model can write `",` as the one token
it would naturally use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# outlines' regex for a JSON number has unbounded digits, and the embedded model sometimes
# writes "1000000..." until max_new_tokens. Generation bounds numbers to 7 integer digits and
# 4 decimals, no exponent (ample for clinical values); answers are still validated against
# the full schema afterwards.
_JSON_NUMBER = r"((-)?(0|[1-9][0-9]*))(\.[0-9]+)?([eE][+-][0-9]+)?"
_BOUNDED_NUMBER = r"((-)?(0|[1-9][0-9]{0,6}))(\.[0-9]{1,4})?"
_REGEX_META = set(r"\.^$|?*+()[]{}")


@dataclass(frozen=True)
class JsonLayout:
    """A flat JSON object as fixed text and values: literals[i] is written, then a value
    matching values[i] (which ends with `,`, or `}` for the last one)."""

    literals: tuple[str, ...]
    values: tuple[str, ...]

    def regex(self) -> str:
        """One regular expression for the whole object (for generators without layouts)."""
        return "".join(_escape(lit) + value for lit, value in zip(self.literals, self.values))


def _escape(literal: str) -> str:
    # Not re.escape: it escapes spaces, which the Rust regex engine of outlines_core rejects.
    return "".join("\\" + c if c in _REGEX_META else c for c in literal)


def value_regex(schema: dict[str, Any]) -> str:
    """The regex of one property's JSON value, numbers bounded."""
    from outlines_core.json_schema import build_regex_from_schema

    return build_regex_from_schema(json.dumps(schema), whitespace_pattern="").replace(_JSON_NUMBER, _BOUNDED_NUMBER)


def json_layout(schema: dict[str, Any]) -> JsonLayout:
    """The layout of a flat object schema whose properties are all required."""
    props = schema.get("properties")
    if schema.get("type") != "object" or not props:
        raise ValueError("json_layout needs an object schema with properties")
    keys = list(props)
    if list(schema.get("required", [])) != keys or schema.get("additionalProperties", True) is not False:
        # An optional key or an extra one would make the text depend on the model, not on
        # the schema's order.
        raise ValueError("json_layout needs every property required, in order, and no others")
    literals = tuple(("{" if i == 0 else " ") + json.dumps(key) + ":" for i, key in enumerate(keys))
    values = tuple(
        " " + value_regex(props[key]) + ("," if i < len(keys) - 1 else r"\}") for i, key in enumerate(keys)
    )
    return JsonLayout(literals, values)


def generation_regex(schema: dict[str, Any]) -> str:
    """The regex constrained generation follows for `schema` (see JsonLayout)."""
    return json_layout(schema).regex()
