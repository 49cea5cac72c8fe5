"""The README's two commands, read from README.md itself (the one source CI, tests and people share).

The commands are the non-comment lines of the README's first ```bash block: command 1 installs
and runs the main job, command 2 installs and runs the tests. ``python3 .ci/readme_commands.py N``
prints command N (``.ci/run`` runs command 1 verbatim with it); ``tests/test_readme.py`` imports
:func:`readme_commands` to check them. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(readme: Path = README) -> list[str]:
    """The commands of the first ```bash block of ``readme`` (comments and blank lines left out)."""
    commands: list[str] = []
    inside = False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if not inside:
            inside = line.strip() == "```bash"
            continue
        if line.strip().startswith("```"):
            break
        if line.strip() and not line.strip().startswith("#"):
            commands.append(line.strip())
    return commands


if __name__ == "__main__":
    found = readme_commands()
    index = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    if not 1 <= index <= len(found):
        sys.exit(f"README.md has {len(found)} command(s) in its first bash block, not {index}")
    print(found[index - 1])
