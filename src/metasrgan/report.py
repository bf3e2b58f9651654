"""One page for a run folder: its Markdown tables and PNG figures, as Markdown and HTML.

The folder is walked recursively (an evaluation folder, or a training run with evaluation
sub-folders); each folder holding tables or figures becomes a section.  The HTML page is
self-contained by default (figures embedded as data URIs) so it can be mailed or archived;
``embed=False`` links the files instead.  The Markdown page always links them.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

REPORT_NAMES = ("report.md", "report.html")
FIGURE_ORDER = ("plot.png", "fig7.png", "fig8.png")
CAPTIONS = {
    "plot.png": "PSNR, SSIM and the PSNR gain over bicubic against scale (means over slices)",
    "fig7.png": "Figure 7 analogue: the methods side by side at x2, with zoomed insets",
    "fig8.png": "Figure 8 analogue: one slice through many scales, bicubic above each model",
}
LINKED_SUFFIXES = (".csv", ".json", ".yaml", ".yml")


@dataclass
class Section:
    """What one folder contributes: Markdown texts, figures and other files to link."""

    folder: Path
    texts: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def collect(run_dir: str | os.PathLike) -> list[Section]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    sections = []
    folders = [run_dir] + sorted(
        p for p in run_dir.rglob("*") if p.is_dir() and not _hidden(p.relative_to(run_dir))
    )
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        texts = [p for p in files if p.suffix == ".md" and p.name not in REPORT_NAMES]
        figures = sorted(
            (p for p in files if p.suffix.lower() == ".png"),
            key=lambda p: (
                FIGURE_ORDER.index(p.name) if p.name in FIGURE_ORDER else len(FIGURE_ORDER),
                p.name,
            ),
        )
        others = [p for p in files if p.suffix.lower() in LINKED_SUFFIXES]
        if texts or figures:
            sections.append(Section(folder, texts, figures, others))
    if not sections:
        raise FileNotFoundError(
            f"{run_dir}: no tables (.md) or figures (.png) found; run `metasrgan evaluate "
            f"--output {run_dir}` first"
        )
    return sections


def _hidden(rel: Path) -> bool:
    return any(part.startswith((".", "__")) for part in rel.parts)


def _title(run_dir: Path, folder: Path) -> str:
    rel = folder.relative_to(run_dir)
    return run_dir.resolve().name if str(rel) == "." else str(rel)


def _demote(text: str, levels: int) -> str:
    """Shift Markdown headings down so each section nests under the page title."""
    return re.sub(r"^(#{1,5}) ", lambda m: "#" * min(6, len(m.group(1)) + levels) + " ", text,
                  flags=re.M)  # fmt: skip


def to_markdown(run_dir: str | os.PathLike, sections: list[Section]) -> str:
    run_dir = Path(run_dir)
    lines = [f"# Report: {run_dir.resolve().name}", ""]
    for sec in sections:
        nested = len(sections) > 1
        if nested:
            lines += [f"## {_title(run_dir, sec.folder)}", ""]
        for text in sec.texts:
            lines += [_demote(text.read_text().strip(), 2 if nested else 1), ""]
        for fig in sec.figures:
            rel = fig.relative_to(run_dir).as_posix()
            caption = CAPTIONS.get(fig.name, fig.stem)
            lines += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
        if sec.files:
            links = ", ".join(f"[{p.name}]({p.relative_to(run_dir).as_posix()})" for p in sec.files)
            lines += [f"Files: {links}", ""]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------ Markdown subset -> HTML


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", out)
    return re.sub(
        r"\[([^\]]+)\]\(([^)]+)\)",
        lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>',
        out,
    )


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, image_src=lambda src: src) -> str:
    """The Markdown these reports use: headings, lists, pipe tables, images, paragraphs."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,6}) (.*)$", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif m := re.match(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$", line):
            alt = html.escape(m.group(1))
            out.append(f'<figure><img src="{image_src(m.group(2))}" alt="{alt}"></figure>')
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            header = _cells(block[0])
            body = [b for b in block[1:] if not re.match(r"^\s*\|[\s|:-]+\|\s*$", b)]
            rows = ["<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(b)) + "</tr>"
                     for b in body]  # fmt: skip
            out.append("<table>\n" + "\n".join(rows) + "\n</table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        else:
            para = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not re.match(r"^(#{1,6} |!\[|\||- )", lines[i].lstrip())
            ):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr:nth-child(even) td { background: #f6f6f6; }
img { max-width: 100%; }
code { background: #f0f0f0; padding: 0 0.2em; }
"""


def to_html(run_dir: str | os.PathLike, markdown: str, embed: bool = True) -> str:
    run_dir = Path(run_dir)

    def image_src(src: str) -> str:
        path = run_dir / src
        if embed and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return f"data:image/png;base64,{data}"
        return html.escape(src)

    body = markdown_to_html(markdown, image_src)
    title = html.escape(f"Report: {run_dir.resolve().name}")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        "</body>\n</html>\n"
    )


def build_report(
    run_dir: str | os.PathLike,
    formats: tuple[str, ...] = ("md", "html"),
    embed: bool = True,
) -> list[Path]:
    """Write ``report.md`` and/or ``report.html`` into ``run_dir``; return their paths."""
    run_dir = Path(run_dir)
    unknown = set(formats) - {"md", "html"}
    if unknown:
        raise ValueError(f"unknown report formats {sorted(unknown)}; use md and/or html")
    markdown = to_markdown(run_dir, collect(run_dir))
    written = []
    if "md" in formats:
        path = run_dir / "report.md"
        path.write_text(markdown)
        written.append(path)
    if "html" in formats:
        path = run_dir / "report.html"
        path.write_text(to_html(run_dir, markdown, embed))
        written.append(path)
    return written
