"""The subset of markdown the report writes, as HTML: headings, paragraphs, pipe tables (github
style, as tabulate writes them), lists, blockquotes, fenced code, code spans, bold, images and
links.  Images go through a callback (the HTML report embeds them); a link keeps its text and
shows its target as text, so no attribute of the page names anything outside it."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Sequence

__all__ = ["ImageRenderer", "markdown_to_html", "numeric_columns"]

# (alt text, target as written) -> the HTML that stands for the image.
ImageRenderer = Callable[[str, str], str]

_HEADING = re.compile(r"(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"[-*+]\s+(.*)$")
_RULE = re.compile(r"(\s*:?-{3,}:?\s*\|)+\s*:?-{3,}:?\s*\|?\s*$|\|(\s*:?-+:?\s*\|)+\s*$")
_INLINE = re.compile(r"(`+)(.+?)\1|!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_NUMBER = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?( ?%)?$", re.IGNORECASE)


def markdown_to_html(text: str, image: ImageRenderer) -> str:
    """``text`` as an HTML fragment; ``image(alt, target)`` renders each image."""
    return "\n".join(_blocks(text.splitlines(), image))


def _blocks(lines: Sequence[str], image: ImageRenderer) -> Iterator[str]:
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if not stripped:
            index += 1
        elif stripped.startswith("```"):
            end = next((i for i in range(index + 1, len(lines))
                        if lines[i].strip().startswith("```")), len(lines))
            yield "<pre><code>" + html.escape("\n".join(lines[index + 1:end])) + "</code></pre>"
            index = end + 1
        elif heading := _HEADING.match(stripped):
            level = len(heading.group(1))
            yield f"<h{level}>{inline(heading.group(2), image)}</h{level}>"
            index += 1
        elif stripped.startswith("|") and index + 1 < len(lines) \
                and _RULE.match(lines[index + 1].strip()):
            end = _run(lines, index, lambda s: s.startswith("|"))
            yield _table(lines[index:end], image)
            index = end
        elif _ITEM.match(stripped):
            end = _run(lines, index, lambda s: bool(_ITEM.match(s)))
            yield "<ul>" + "".join(
                f"<li>{inline(_item_text(line), image)}</li>" for line in lines[index:end]
            ) + "</ul>"
            index = end
        elif stripped.startswith(">"):
            end = _run(lines, index, lambda s: s.startswith(">"))
            quoted = [line.strip()[1:].removeprefix(" ") for line in lines[index:end]]
            yield "<blockquote>" + _paragraph(quoted, image) + "</blockquote>"
            index = end
        else:
            end = _run(lines, index, lambda s: not _starts_block(s))
            yield _paragraph(lines[index:end], image)
            index = end


def _run(lines: Sequence[str], start: int, keep: Callable[[str], bool]) -> int:
    """The end of the run of non-blank lines from ``start`` that ``keep`` accepts."""
    end = start + 1
    while end < len(lines) and lines[end].strip() and keep(lines[end].strip()):
        end += 1
    return end


def _starts_block(stripped: str) -> bool:
    return bool(stripped.startswith(("|", ">", "```")) or _HEADING.match(stripped)
                or _ITEM.match(stripped))


def _item_text(line: str) -> str:
    found = _ITEM.match(line.strip())
    return found.group(1) if found else line.strip()


def _paragraph(lines: Sequence[str], image: ImageRenderer) -> str:
    """Lines as one paragraph, each on its own line: the report writes a line per statement
    (a validity mark, then the health figures behind it)."""
    return "<p>" + "<br>".join(inline(line.strip(), image) for line in lines) + "</p>"


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(row)]


def _table(rows: Sequence[str], image: ImageRenderer) -> str:
    header, rule, *body = rows
    cells = [_cells(row) for row in body]
    right = numeric_columns(cells)
    aligns = ["right" if (c.endswith(":") and not c.startswith(":")) or number in right
              else "center" if c.startswith(":") and c.endswith(":") and len(c) > 1 else ""
              for number, c in enumerate(_cells(rule))]

    def row_html(tag: str, cells: Sequence[str]) -> str:
        out = []
        for number, cell in enumerate(cells):
            align = aligns[number] if number < len(aligns) else ""
            style = f' class="{align}"' if align else ""
            out.append(f"<{tag}{style}>{inline(cell, image)}</{tag}>")
        return "<tr>" + "".join(out) + "</tr>"

    head = _cells(header)
    shown = "" if not any(head) else f"<thead>{row_html('th', head)}</thead>"
    return ('<div class="table"><table>' + shown + "<tbody>"
            + "".join(row_html("td", row) for row in cells) + "</tbody></table></div>")


def numeric_columns(rows: Sequence[Sequence[str]]) -> set[int]:
    """The columns whose cells are all numbers (or ``-``, and at least one number): shown
    right-aligned (tabulate pads them so without saying so in the rule)."""
    width = max((len(row) for row in rows), default=0)
    return {column for column in range(width)
            if all(column >= len(row) or row[column] in ("-", "") or _NUMBER.match(row[column])
                   for row in rows)
            and any(column < len(row) and _NUMBER.match(row[column]) for row in rows)}


def inline(text: str, image: ImageRenderer) -> str:
    """One line's inline markdown as HTML: code spans, images, links (their text, the target
    in brackets), ``**bold**``; everything else escaped."""
    kept: list[str] = []  # finished HTML, out of reach of the bold pass

    def keep(fragment: str) -> str:
        kept.append(fragment)
        return f"\x00{len(kept) - 1}\x00"

    out, position = [], 0
    for found in _INLINE.finditer(text):
        out.append(html.escape(text[position:found.start()], quote=False))
        code, alt, target, label, link = (found.group(2), found.group(3), found.group(4),
                                          found.group(5), found.group(6))
        if code is not None:
            out.append(keep(f"<code>{html.escape(code.strip(), quote=False)}</code>"))
        elif target is not None:
            out.append(keep(image(alt or "", target)))
        else:
            shown = html.escape(label, quote=False)
            out.append(shown if link in (label, f"#{label}")
                       else f"{shown} ({keep(html.escape(link, quote=False))})")
        position = found.end()
    out.append(html.escape(text[position:], quote=False))
    joined = _BOLD.sub(r"<strong>\1</strong>", "".join(out))
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], joined)
