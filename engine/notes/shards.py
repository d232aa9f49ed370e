"""Shards: split a corpus across machines by a stable hash of note_id.

`crit run ... --shard 2/4` keeps the notes whose id hashes to shard 2 of 4, so n
machines given the same corpus and the same `--shard i/n` scheme each run a
disjoint slice, whatever the row order of their copy of the file, and every
note lands in exactly one shard. The hash is SHA-256 of the id's UTF-8 bytes:
the same on every machine, Python version and DuckDB version (Python's hash()
and DuckDB's hash() are neither). `crit merge` (crit.engine.merge) joins the stores.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ConfigDict

from crit.grammar.errors import CritError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class Shard(BaseModel):
    """Shard `index` of `count`, 1-based (`--shard 1/4` ... `--shard 4/4`)."""

    model_config = ConfigDict(frozen=True)

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, note_id: str) -> bool:
        return shard_of(note_id, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """'2/4' -> Shard(index=2, count=4); CritError for anything else."""
    m = _SHARD.match(text)
    if not m:
        raise CritError(f"--shard {text!r}: write it as i/n, e.g. --shard 1/4 (shards are numbered 1 to n)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise CritError(f"--shard {text!r}: i must be between 1 and n (n >= 1)")
    return Shard(index=index, count=count)


def shard_of(note_id: str, count: int) -> int:
    """The shard (1..count) a note belongs to: first 8 bytes of SHA-256(note_id), modulo count."""
    digest = hashlib.sha256(note_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1
