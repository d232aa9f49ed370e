"""The `crit` command: the engine's commands (crit.engine.cli) and the trainer's (crit.trainer.cli).

Composed here, above both, so that crit.engine never imports crit.trainer.
"""

from __future__ import annotations

from crit.engine.cli import cli
from crit.trainer.cli import COMMANDS

for _command in COMMANDS:
    cli.add_command(_command)

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="crit")


if __name__ == "__main__":
    main()
