"""A report's README.md as one self-contained report.html, readable in MLflow's artifact viewer.
markdown-it-py parses it: a maintained CommonMark parser with GitHub's tables, in place of regexes."""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.5}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}
pre{background:#f3f3f3;padding:.6em;overflow:auto}blockquote{border-left:4px solid #ccc;margin:0;padding-left:1em}"""
ALLOWED_TAG = re.compile(r"&lt;(/?(?:details|summary))&gt;", re.IGNORECASE)  # the report's own raw HTML
WEB = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)
MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def anchor(name: str) -> str:
    """The id of an embedded image, so a link to its file can jump to it."""
    return "file-" + re.sub(r"[^\w-]+", "-", name).strip("-")


def slug(text: str) -> str:
    return re.sub(r"[^\w]+", "-", text.lower()).strip("-")


def render_html(report_dir: Path, source: str = "README.md", out: str = "report.html") -> Path:
    """Write `report_dir/out`, the markdown `report_dir/source` as one self-contained HTML page; return its path.

    Images are embedded as data URIs, a link to a figure jumps to it on the page, a link to another report file
    becomes plain text (it would 404 inside MLflow), web links and anchors stay.
    """
    report_dir = Path(report_dir)
    root = report_dir.resolve()

    def image_src(target: str) -> str | None:
        """An image file inside `report_dir` as a data URI; None for anything else, which is not read."""
        path = (report_dir / target).resolve()
        kind = mimetypes.guess_type(path.name)[0] or ""
        if not (kind.startswith("image/") and path.is_relative_to(root) and path.is_file()):
            return None
        return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"

    blocks = MD.parse((report_dir / source).read_text(encoding="utf-8"))
    tokens = [t for block in blocks for t in (block, *(block.children or []))]  # inline children after each block
    title, link = None, None
    for i, token in enumerate(tokens):
        target = unquote(str(token.attrGet("src") or token.attrGet("href") or ""))
        if token.type == "heading_open":  # the inline token that follows holds the heading's text
            token.attrSet("id", slug(tokens[i + 1].content))
            title = title or (tokens[i + 1].content if token.tag == "h1" else None)
        elif token.type in ("html_block", "html_inline"):  # raw HTML is escaped, but for <details>/<summary>
            token.content = ALLOWED_TAG.sub(r"<\1>", html.escape(token.content, quote=False))
        elif token.type == "image" and (src := image_src(target)) is not None:
            token.attrs.update(src=src, id=anchor(target))
        elif token.type == "image":  # no <img> that the page would fetch from elsewhere
            token.type = "html_inline"
            token.content = f"<em>[image {html.escape(target)} not in the report]</em>"
        elif token.type == "link_open":
            link, local = token, not WEB.match(target)
            if local and image_src(target) is not None:  # a figure of this report: jump to it on the page
                token.attrs = {"href": f"#{anchor(target)}"}
            elif local:  # summary.json etc.: the link would 404 inside MLflow
                token.tag, token.attrs = "span", {"title": f"{target} (a report file)"}
        elif token.type == "link_close" and link:  # links do not nest: a close ends the last open
            token.tag = link.tag
        # a line break only after each top-level block: the tags inside one stay adjacent, as on the old page
        token.block = token.block and token.nesting != 1 and token.level == 0
    title, body = html.escape(title or report_dir.name), MD.renderer.render(blocks, MD.options, {})
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n")
    target = report_dir / out
    target.write_text(page, encoding="utf-8")
    return target
