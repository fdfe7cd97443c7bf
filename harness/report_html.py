"""A report's README.md as one self-contained `report.html`: readable in MLflow's artifact viewer, which shows
an HTML artifact but neither a markdown file's images nor its relative links.

Images are embedded as data URIs; a link to a figure jumps to it on the page; a link to another report file
becomes plain text (it would 404 inside MLflow); web links stay. The converter covers the markdown the
report writes (headings, paragraphs, block quotes, nested lists, tables, images, links, code, emphasis and
<details> blocks), so the harness needs no markdown package.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from collections.abc import Callable
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.5}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}
pre{background:#f3f3f3;padding:.6em;overflow:auto}blockquote{border-left:4px solid #ccc;margin:0;padding-left:1em}"""
ALLOWED_TAGS = re.compile(r"</?(details|summary)>", re.IGNORECASE)  # the report's own raw HTML, nothing else
LIST_ITEM = re.compile(r"^(\s*)([-*]|\d+\.)\s+(.*)$")
TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
WEB = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)


def anchor(name: str) -> str:
    """The id of an embedded image, so a link to its file can jump to it."""
    return "file-" + re.sub(r"[^\w-]+", "-", name).strip("-")


def slug(text: str) -> str:
    return re.sub(r"[^\w]+", "-", text.lower()).strip("-")


class Inline:
    """Inline markdown -> HTML, with images resolved through `image_src` and links made safe for MLflow."""

    def __init__(self, image_src: Callable[[str], str | None]):
        self.image_src = image_src

    def __call__(self, text: str) -> str:
        codes: list[str] = []

        def keep_code(match: re.Match) -> str:  # code spans are literal: set aside before any other rule
            codes.append(f"<code>{html.escape(match.group(1))}</code>")
            return f"\x00{len(codes) - 1}\x00"

        text = re.sub(r"`([^`]+)`", keep_code, text)
        tags: list[str] = []

        def keep_tag(match: re.Match) -> str:
            tags.append(match.group(0).lower())
            return f"\x01{len(tags) - 1}\x01"

        text = html.escape(ALLOWED_TAGS.sub(keep_tag, text), quote=False)
        text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", self.image, text)
        text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", self.link, text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        text = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", text)
        text = re.sub("\x01(\\d+)\x01", lambda m: tags[int(m.group(1))], text)
        # a code span inside a link's text is restored last, so links around code still work
        return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)

    def image(self, match: re.Match) -> str:
        alt, target = match.group(1), html.unescape(match.group(2))
        src = self.image_src(target)
        if src is None:
            return f"<em>[image {html.escape(target)} not in the report]</em>"
        return f'<img id="{anchor(target)}" alt="{html.escape(alt, quote=True)}" src="{src}">'

    def link(self, match: re.Match) -> str:
        label, target = match.group(1), html.unescape(match.group(2))
        if WEB.match(target):
            return f'<a href="{html.escape(target, quote=True)}">{label}</a>'
        if self.image_src(target) is not None:  # a figure of this report: jump to it on the page
            return f'<a href="#{anchor(target)}">{label}</a>'
        return f'<span title="{html.escape(target, quote=True)} (a report file)">{label}</span>'


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(text: str, inline: Callable[[str], str]) -> str:
    """The block structure: each construct is recognised by its first line and consumes its own lines."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1 : end]))}</code></pre>")
            i = end + 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            level, title = len(m.group(1)), m.group(2).strip()
            out.append(f'<h{level} id="{slug(title)}">{inline(title)}</h{level}>')
            i += 1
        elif line.startswith(">"):
            quoted = []
            while i < len(lines) and lines[i].startswith(">"):
                quoted.append(lines[i][1:].removeprefix(" "))
                i += 1
            out.append(f"<blockquote>{markdown_to_html(chr(10).join(quoted), inline)}</blockquote>")
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1]):
            head = "".join(f"<th>{inline(c)}</th>" for c in _cells(line))
            rows, i = [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        elif LIST_ITEM.match(line):
            items = []
            while i < len(lines) and (m := LIST_ITEM.match(lines[i])):
                items.append((len(m.group(1)), "ol" if m.group(2)[0].isdigit() else "ul", m.group(3)))
                i += 1
            out.append(_list(items, inline))
        elif ALLOWED_TAGS.match(line.strip()):
            out.append(inline(line.strip()))
            i += 1
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def _starts_block(line: str) -> bool:
    return bool(line.startswith(("#", ">", "```", "|")) or LIST_ITEM.match(line) or ALLOWED_TAGS.match(line.strip()))


def _list(items: list[tuple[int, str, str]], inline: Callable[[str], str]) -> str:
    """Nested lists from (indent, kind, text) items: a deeper indent opens a list inside the previous item."""
    html_parts, stack = [], []  # stack of (indent, kind)
    for indent, kind, text in items:
        while stack and indent < stack[-1][0]:
            html_parts.append(f"</li></{stack.pop()[1]}>")
        if not stack or indent > stack[-1][0]:
            stack.append((indent, kind))
            html_parts.append(f"<{kind}><li>")
        else:
            html_parts.append("</li><li>")
        html_parts.append(inline(text))
    while stack:
        html_parts.append(f"</li></{stack.pop()[1]}>")
    return "".join(html_parts)


def data_uri(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def render_html(report_dir: Path, source: str = "README.md", out: str = "report.html") -> Path:
    """Write `report_dir/out`, the markdown `report_dir/source` as one self-contained HTML page; return its path.

    Only images inside `report_dir` are embedded: a path that leads out of it is not read.
    """
    report_dir = Path(report_dir)
    root = report_dir.resolve()

    def image_src(target: str) -> str | None:
        path = (report_dir / target).resolve()
        inside = path.is_relative_to(root) and path.is_file()
        return data_uri(path) if inside and (mimetypes.guess_type(path.name)[0] or "").startswith("image/") else None

    text = (report_dir / source).read_text(encoding="utf-8")
    body = markdown_to_html(text, Inline(image_src))
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("# ")), report_dir.name)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
    target = report_dir / out
    target.write_text(page, encoding="utf-8")
    return target
