"""The settings table of ``docs/operations.md``, generated from ``common.settings.Settings``.

``python -m cli.settings_doc`` prints the markdown table; ``python -m cli.settings_doc --update``
rewrites only the part of ``docs/operations.md`` between the ``settings-table`` markers. A unit test
checks that the page lists exactly the fields of ``Settings``, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common.settings import REPO_ROOT, Settings

ENV_PREFIX = "LAKEHOUSE_"
START_MARKER = "<!-- settings-table:start -->"
END_MARKER = "<!-- settings-table:end -->"
SETTINGS_DOC = REPO_ROOT / "docs" / "operations.md"


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def render_default(value: object) -> str:
    """A default as a reader should set it, independent of where this clone or this user lives."""
    if isinstance(value, Path):
        return f"`{_relative_path(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None or value == "":
        return "*(empty)*"
    return f"`{value}`"


def _relative_path(path: Path) -> str:
    for root, label in ((REPO_ROOT, "<repo>"), (Path.home(), "~")):
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        return label if str(rel) == "." else f"{label}/{rel.as_posix()}"
    return path.as_posix()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_table() -> str:
    """Markdown table of every setting: environment variable, default, description."""
    lines = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default, description = _cell(render_default(field.default)), _cell(field.description or "")
        lines.append(f"| `{env_name(name)}` | {default} | {description} |")
    return "\n".join(lines)


def replace_table(text: str, table: str) -> str:
    """``text`` with the content between the markers replaced by ``table`` (markers kept)."""
    start = text.find(START_MARKER)
    end = text.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"the page has no {START_MARKER} … {END_MARKER} block")
    return text[: start + len(START_MARKER)] + "\n" + table + "\n" + text[end:]


def update_doc(path: Path = SETTINGS_DOC) -> None:
    """Write the table into ``path`` between the markers; create a minimal page if there is none."""
    table = settings_table()
    if path.exists():
        path.write_text(replace_table(path.read_text(), table))
    else:
        path.write_text(f"## Settings\n\n{START_MARKER}\n{table}\n{END_MARKER}\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cli.settings_doc", description=__doc__.splitlines()[0])
    # --update-readme is the flag's name from when the table lived in README.md; kept so it still works
    p.add_argument("--update", "--update-readme", dest="update", action="store_true",
                   help=f"rewrite the table in {SETTINGS_DOC} between the markers")
    args = p.parse_args(argv)
    if args.update:
        update_doc()
        print(f"updated the settings table in {SETTINGS_DOC}")
    else:
        print(settings_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
