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


# ------------------------------------------------------------------ Markdown -> HTML

IMAGE_LINK = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)\s*$", flags=re.M)


def markdown_to_html(text: str, image_src=lambda src: src) -> str:
    """HTML of ``text`` by the ``markdown`` package (pipe tables; raw HTML escaped);
    ``image_src`` maps each image's path (to a data URI for a self-contained page)."""
    import markdown

    text = IMAGE_LINK.sub(lambda m: f"![{m.group(1)}]({image_src(m.group(2))})", text)
    converter = markdown.Markdown(extensions=["tables"], output_format="html")
    converter.preprocessors.deregister("html_block")  # file names and notes are text, never
    converter.inlinePatterns.deregister("html")  # markup: raw HTML is escaped
    return converter.convert(text)


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
        return src  # the markdown package escapes attributes

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
    from metasrgan.atomic import atomic_write

    markdown = to_markdown(run_dir, collect(run_dir))
    pages = {"md": lambda: markdown, "html": lambda: to_html(run_dir, markdown, embed)}
    written = []
    for fmt in ("md", "html"):
        if fmt in formats:
            path, text = run_dir / f"report.{fmt}", pages[fmt]()
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
            written.append(path)
    return written
