"""Assemble the page: header, summary table and one section per view, in one HTML file.

plotly.js is embedded once. By default it is gzip-compressed and base64-encoded (4.8 MB
becomes ~1.9 MB) and unpacked in the browser with the standard ``DecompressionStream``
(every current browser; Chrome 80, Firefox 113, Safari 16.4); ``compress_js=False`` embeds
it as plain text instead. Nothing is fetched from the network: the file works offline.
The same inputs always give byte-identical pages.
"""

from __future__ import annotations

import base64
import gzip
from functools import lru_cache
from pathlib import Path
from typing import Any

from fleetsched import __version__
from fleetsched.report.data import ReportData
from fleetsched.report.header import header_html
from fleetsched.report.views import View, build_views
from fleetsched.report.views.common import esc, require_plotly

PLOT_CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.3em; }
section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 4px 16px 12px;
          margin-top: 18px; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e6e6e6; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.scenario th { font-weight: 600; color: #555; }
.note { color: #555; font-size: 0.9em; }
.scroll { overflow-x: auto; }
#status { color: #a00; }
"""

# Decompress plotly.js when it is embedded gzipped, then draw every figure.
LOADER = """
(async function () {
  const status = document.getElementById("status");
  try {
    if (!window.Plotly) {
      const packed = document.getElementById("plotly-js-gz");
      const bin = atob(packed.textContent.trim());
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      const code = await new Response(stream).text();
      const script = document.createElement("script");
      script.textContent = code;
      document.head.appendChild(script);
    }
    const figures = JSON.parse(document.getElementById("figures").textContent);
    for (const f of figures) {
      await Plotly.newPlot(f.id, f.data, f.layout, f.config);
    }
    status.remove();
    document.body.dataset.rendered = figures.length;
  } catch (e) {
    status.textContent = "The plots could not be drawn (" + e + "). This page needs a browser"
      + " with DecompressionStream (2023 or later), or a report made with --plain-js.";
    throw e;
  }
})();
"""


def n_views(n: int) -> str:
    return f"{n} view" + ("" if n == 1 else "s")


@lru_cache(maxsize=2)
def plotly_js(compress: bool) -> str:
    """plotly.js as shipped with plotly.py: plain, or gzip (mtime 0, deterministic) + base64."""
    require_plotly()
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    if not compress:
        return js.replace("</script", "<\\/script")
    return base64.b64encode(gzip.compress(js.encode(), compresslevel=9, mtime=0)).decode()


def figure_json(view: View) -> dict[str, Any]:
    """A view's figure as plotly.js wants it, without plotly.py's template (~8 kB each)."""
    d = view.figure.to_plotly_json()
    d["layout"].pop("template", None)
    return {"id": f"fig-{view.id}", "data": d["data"], "layout": d["layout"], "config": PLOT_CONFIG}


def _json_for_html(obj: Any) -> str:
    from plotly.io.json import to_json_plotly

    return to_json_plotly(obj).replace("</", "<\\/")


def render(data: ReportData, *, compress_js: bool = True) -> str:
    """The whole report as one HTML string."""
    require_plotly()
    views = build_views(data)
    links = [("summary", "Summary")] if data.runs else []
    links += [(v.id, v.title) for v in views]
    nav = " ".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t in links)
    sections = "\n".join(
        f'<section id="{esc(v.id)}"><h2>{esc(v.title)}</h2>'
        + (f'<p class="note">{esc(v.note)}</p>' if v.note else "")
        + f'<div class="plot" id="fig-{esc(v.id)}"></div>{v.html}</section>'
        for v in views
    )
    figures = _json_for_html([figure_json(v) for v in views])
    if compress_js:
        js_tag = (
            f'<script id="plotly-js-gz" type="application/octet-stream">{plotly_js(True)}</script>'
        )
    else:
        js_tag = f"<script>{plotly_js(False)}</script>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="fleetsched {esc(__version__)}">
<title>{esc(data.title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{esc(data.title)}</h1>
<p class="note">fleetsched {esc(__version__)} · {n_views(len(views))}</p>
<nav>{nav}</nav>
<p id="status">Drawing the plots… (this needs JavaScript)</p>
{header_html(data)}
{sections}
</main>
{js_tag}
<script id="figures" type="application/json">{figures}</script>
<script>{LOADER}</script>
</body>
</html>
"""


def write_report(data: ReportData, path: str | Path, *, compress_js: bool = True) -> int:
    """Write the report to ``path``; return its size in bytes."""
    text = render(data, compress_js=compress_js)
    p = Path(path)
    if p.parent != Path():
        p.parent.mkdir(parents=True, exist_ok=True)
    raw = text.encode("utf-8")
    p.write_bytes(raw)
    return len(raw)
