"""crit: clinical trial screening over notes.

The code lives in three subpackages, one stage each:
``crit.grammar`` (text -> AST), ``crit.engine`` (plan, model, rules, store, CLI)
and ``crit.trainer`` (distil the student model that backs the engine).
"""

__version__ = "0.1.0"
