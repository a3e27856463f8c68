"""``python -m mmlc.tools.param_tables``: write the parameter tables of docs/*.md from the
operation specs (core/operations), between the markers ``<!-- params:OPERATION -->`` and
``<!-- /params:OPERATION -->``; ``--check`` only reports stale tables (exit 1), as
tests/test_operations.py does. Run ``python -m mmlc.tools.docs_html`` after writing.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..core.operations import OPERATIONS, Operation
from ..core.operations.spec import Param

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: The page holding each operation's table.
PAGES = {op_id: DOCS / f"{op_id}.md" for op_id in OPERATIONS}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def row(p: Param) -> str:
    """One table row: the id, what it is (with where it lives and whether it is Advanced), its default."""
    what = p.doc or p.help.rstrip(".")
    notes = []
    if p.advanced:
        notes.append("under *Advanced* in the dialog")
    if not p.in_processing:
        notes.append("command line only")
    elif not p.in_cli:
        notes.append("Processing only")
    if notes:
        what += f" ({'; '.join(notes)})"
    default = p.doc_default or ("—" if p.default is None else f"`{p.default}`")
    return f"| `{p.id}` | {_cell(what)} | {_cell(default)} |"


def table(op: Operation) -> str:
    """The markdown table of ``op``'s parameters, in the dialog's order, then its numeric outputs."""
    lines = ["| id | what | default |", "|---|---|---|", *(row(p) for p in op.params)]
    if op.numbers:
        ids = ", ".join(f"`{key}`" for key, _ in op.numbers)
        names = ", ".join(label for _, label in op.numbers)
        lines.append(f"| outputs {ids} | {names}: numbers a Modeler chain can use | — |")
    return "\n".join(lines)


def _markers(op_id: str) -> re.Pattern:
    return re.compile(rf"(<!-- params:{op_id} -->)(.*?)(<!-- /params:{op_id} -->)", re.S)


def rewrite(text: str, op: Operation) -> str:
    """``text`` with the table between ``op``'s markers replaced by the generated one."""
    pattern = _markers(op.id)
    if not pattern.search(text):
        raise ValueError(f"no <!-- params:{op.id} --> ... <!-- /params:{op.id} --> markers")
    # blank lines around the table: Markdown would read a table glued to the comment as HTML
    return pattern.sub(lambda m: m.group(1) + "\n\n" + table(op) + "\n\n" + m.group(3), text, count=1)


def stale_pages() -> list[Path]:
    """The pages whose table differs from the spec's."""
    out = []
    for op_id, page in PAGES.items():
        text = page.read_text(encoding="utf-8")
        if rewrite(text, OPERATIONS[op_id]) != text:
            out.append(page)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report stale tables, write nothing")
    args = parser.parse_args(argv)
    stale = stale_pages()
    if args.check:
        for page in stale:
            print(f"{page.relative_to(ROOT)}: parameter table differs from the spec", file=sys.stderr)
        return 1 if stale else 0
    for page in stale:
        page.write_text(rewrite(page.read_text(encoding="utf-8"), OPERATIONS[page.stem]), encoding="utf-8")
        print(f"wrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
