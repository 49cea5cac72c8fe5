"""Prompt templates, loaded by name from files; nothing else in the package knows their paths.

Templates are UTF-8 Markdown files named ``NAME.md`` using ``$variable`` placeholders
(:class:`string.Template`), so JSON braces in a template need no escaping. They ship inside
the wheel; a folder given as ``prompts_dir`` overrides them file by file.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

from drpo_agents.errors import PromptTemplateError

_PACKAGE_DIR = Path(__file__).resolve().parent
# In a wheel the templates are copied to drpo_agents/_prompts; in a checkout they sit at the repo root.
_SEARCH_PATH = (_PACKAGE_DIR / "_prompts", _PACKAGE_DIR.parent / "prompts")


def approx_tokens(text: str) -> int:
    """A provider-neutral token estimate (about 4 characters per token, as most tokenizers on English)."""
    return max(1, len(text) // 4)


def packaged_prompts_dir() -> Path:
    """The folder holding the templates that ship with the package."""
    for folder in _SEARCH_PATH:
        if folder.is_dir():
            return folder
    raise PromptTemplateError(
        "drpo-agents' prompt templates are missing (looked in "
        + ", ".join(str(p) for p in _SEARCH_PATH)
        + "); reinstall the package."
    )


def available_prompts(prompts_dir: Path | None = None) -> list[str]:
    """Names of every template that :func:`load_prompt` can load."""
    names = {p.stem for p in packaged_prompts_dir().glob("*.md")}
    if prompts_dir is not None:
        names |= {p.stem for p in Path(prompts_dir).glob("*.md")}
    return sorted(names)


@lru_cache(maxsize=256)
def _template(name: str, prompts_dir: Path | None) -> string.Template | None:
    # Cached: every model call renders a template, and finding one costs several file-system
    # calls. A template is read once per process (edits show in the next run).
    folders = ([Path(prompts_dir)] if prompts_dir is not None else []) + [packaged_prompts_dir()]
    for folder in folders:
        path = folder / f"{name}.md"
        if path.is_file():
            try:
                return string.Template(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as exc:
                raise PromptTemplateError(f"prompt template {path} is not valid UTF-8: {exc}") from exc
    return None


def load_prompt(name: str, prompts_dir: Path | None = None) -> string.Template:
    """The template called ``name``, from ``prompts_dir`` if it has one, else the packaged one."""
    template = _template(name, Path(prompts_dir) if prompts_dir is not None else None)
    if template is None:
        raise PromptTemplateError(
            f"no prompt template named {name!r} (available: {', '.join(available_prompts(prompts_dir))})"
        )
    return template


def render_prompt(name: str, prompts_dir: Path | None = None, /, **variables: object) -> str:
    """Load ``name`` and substitute ``variables``; a placeholder left unfilled is an error."""
    template = load_prompt(name, prompts_dir)
    try:
        return template.substitute({k: str(v) for k, v in variables.items()}).strip()
    except KeyError as exc:
        raise PromptTemplateError(f"prompt template {name!r} needs variable {exc.args[0]!r}") from exc
    except ValueError as exc:
        raise PromptTemplateError(f"prompt template {name!r} is malformed: {exc}") from exc
