"""The HTML report (``--llmperf-html``): the markdown report's content as one self-contained
file, readable in any browser and printable.  The charts are embedded as base64 ``data:`` PNGs;
the CSS is inline; a Content-Security-Policy forbids the page any fetch at all, so nothing in it
can reach outside the file (GuideLLM's HTML report broke when its CDN asset moved).

:func:`html_page` is the shell every HTML output shares (also ``python -m pytest_llmperf
configs --html``)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from pytest_llmperf.report.markdown_html import markdown_to_html

__all__ = ["html_page", "png_img", "report_html"]

# No fetch of any kind: images only from data: URIs, styles only inline, no script.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
 max-width:80em;padding:0 1.5em;color:#1d1d1f;line-height:1.45;font-size:15px}
h1{font-size:1.6em;border-bottom:2px solid #2a7;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.15em}
h3{font-size:1.05em;margin-top:1.5em}
code{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.9em;
 background:#f3f3f3;border-radius:3px;padding:0 .25em;overflow-wrap:anywhere}
h2 code,h3 code{background:none;padding:0}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}
.table{overflow-x:auto;margin:.5em 0 1.2em}
table{border-collapse:collapse;font-size:.85em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f0f2f4}
tbody tr:nth-child(even){background:#fafafa}
.right{text-align:right}.center{text-align:center}
blockquote{border-left:4px solid #2a7;margin:1em 0;padding:.2em 1em;background:#f4faf7}
img{display:block;max-width:100%;height:auto;margin:.6em 0;border:1px solid #eee}
.missing{color:#a33;font-style:italic}
strong{color:#000}
@media print{
 @page{margin:1.2cm}
 body{margin:0;max-width:none;padding:0;font-size:10pt}
 .table{overflow:visible}
 table{font-size:7.5pt;page-break-inside:auto}
 th,td{padding:.1em .3em}
 td{overflow-wrap:anywhere}
 td.right,th{overflow-wrap:normal;hyphens:auto}
 thead{display:table-header-group}
 tr,img,blockquote{page-break-inside:avoid;break-inside:avoid}
 h1,h2,h3{page-break-after:avoid;break-after:avoid}
 img{max-height:60vh;width:auto;border:none}
 tbody tr:nth-child(even){background:none}
 code{background:none;padding:0}
}
"""


def html_page(title: str, body_html: str) -> str:
    """A whole HTML document around ``body_html``: inline CSS (with a print stylesheet), and a
    policy under which the page cannot fetch anything."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n"
            f"{body_html}\n</body></html>\n")


def png_img(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG at ``path`` inside it as a data: URI; a file that cannot be
    read is said in text instead."""
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        return (f'<span class="missing">[{html.escape(alt)}: {html.escape(str(path))} '
                f"{html.escape(why)}]</span>")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def report_html(markdown: str, base: Path, appendix_html: str = "") -> str:
    """The markdown report as a page: its images (the timeline, sweep and capacity charts)
    embedded from their files, a relative link resolved against ``base`` (the folder the
    markdown links from); ``appendix_html`` (the configuration comparison) goes at the end."""

    def image(alt: str, target: str) -> str:
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and len(target) > 2 \
                and not re.match(r"[a-z]:[\\/]", target, re.IGNORECASE):  # a URL, not C:\
            return (f'<span class="missing">[{html.escape(alt)}: {html.escape(target)} is not '
                    "a local file and is not embedded]</span>")
        path = Path(target)
        return png_img(path if path.is_absolute() else base / path, alt)

    title = next((line[2:].strip() for line in markdown.splitlines() if line.startswith("# ")),
                 "LLM serving performance")
    return html_page(title, markdown_to_html(markdown, image)
                     + ("\n" + appendix_html if appendix_html else ""))
