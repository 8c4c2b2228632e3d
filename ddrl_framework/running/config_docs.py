"""The configuration tables of the docs, generated from the config classes' fields.

Each field carries its description in ``metadata["doc"]`` (and, where the value itself does not
say it, its default in words in ``metadata["default"]``). A page holds a generated table between
``<!-- generated: SECTION -->`` and ``<!-- end generated -->``; this module rewrites them::

    python -m ddrl_framework.running.config_docs       # rewrite docs/configuration.md, docs/comparisons.md

tests/unit/test_docs.py fails while a committed table differs from what this renders.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import attrs

from ddrl_framework.running.config import Arm, CompareConfig, Experiment, PretrainConfig, TrainConfig

SECTIONS: dict[str, type] = {"top-level": Experiment, "pretrain": PretrainConfig, "train": TrainConfig,
                             "compare": CompareConfig, "compare.arms": Arm}
PAGES = ("docs/configuration.md", "docs/comparisons.md")
BLOCK = re.compile(r"(<!-- generated: ([\w.-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def toml_value(value: Any) -> str:
    """``value`` as TOML writes it: ``"cosine"``, ``true``, ``[0, 1]``, ``0.001``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def default_text(field: attrs.Attribute) -> str:
    if "default" in field.metadata:
        return field.metadata["default"]
    if field.default is attrs.NOTHING:
        return "(required)"
    if field.default is None:
        return "none"
    return f"`{toml_value(field.default)}`"


def table(cls: type) -> str:
    """The ``| key | default | meaning |`` table of ``cls``'s fields, in their order."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for field in attrs.fields(cls):
        if "doc" not in field.metadata:
            raise ValueError(f"{cls.__name__}.{field.name} has no metadata['doc'] to document it by")
        rows.append(f"| `{field.name}` | {default_text(field)} | {field.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def regenerate(text: str) -> str:
    """``text`` with every generated block rendered anew."""
    def render(match: re.Match) -> str:
        if match.group(2) not in SECTIONS:
            raise ValueError(f"no config section '{match.group(2)}'; sections: {', '.join(SECTIONS)}")
        return match.group(1) + table(SECTIONS[match.group(2)]) + match.group(4)
    return BLOCK.sub(render, text)


def main(root: Path = Path(__file__).parents[2]) -> None:
    for page in PAGES:
        path = root / page
        text = path.read_text()
        new = regenerate(text)
        if new != text:
            path.write_text(new)
            print(f"rewrote {page}", file=sys.stderr)


if __name__ == "__main__":
    main()
