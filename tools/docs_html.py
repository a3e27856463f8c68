"""``python -m mmlc.tools.docs_html``: render docs/*.md into docs/html/*.html for the dialogs' Help.

A Processing dialog's Help button opens the algorithm's ``helpUrl`` in the system browser; a
raw Markdown file there shows as plain text (or is downloaded). The pages are rendered once
here with Python-Markdown (a development requirement, not a plugin one), committed, and shipped
with the plugin; ``tests/test_dialogs.py`` fails when a page is older than its Markdown.
Links between the Markdown pages are pointed at the rendered pages.
"""
from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OUT = DOCS / "html"

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:60em;color:#222;
padding:0 1em;line-height:1.45}
h1{font-size:1.5em;border-bottom:2px solid #1f78b4;padding-bottom:.2em}h2{font-size:1.2em;margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:.93em}th,td{border:1px solid #ccc;padding:.3em .6em;
vertical-align:top}th{background:#f0f4f8;text-align:left}code{background:#f4f4f4;padding:0 .2em}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto}img{max-width:100%}
"""


def render(md_text: str, title: str) -> str:
    """One self-contained HTML page from Markdown text."""
    import markdown

    body = markdown.markdown(md_text, extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    body = re.sub(r'href="(?!https?:)([^"#]+)\.md(#[^"]*)?"', lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"',
                  body)
    body = body.replace('src="img/', 'src="../img/')
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n{body}\n"
            "<p style='color:#777;font-size:.9em'>mmlc documentation, rendered from docs/ in the plugin.</p>"
            "</body></html>\n")


def title_of(md_text: str, fallback: str) -> str:
    for line in md_text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def build(docs: Path = DOCS, out: Path = OUT) -> list[Path]:
    """Render every docs/*.md; returns the pages written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for md in sorted(docs.glob("*.md")):
        text = md.read_text(encoding="utf-8")
        page = out / f"{md.stem}.html"
        page.write_text(render(text, title_of(text, md.stem)), encoding="utf-8")
        written.append(page)
    return written


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    for page in build():
        print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
