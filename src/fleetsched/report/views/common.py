"""What every view shares: the View record, one colour per run, plotly imported lazily."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetsched.errors import InputError

#: Run colours (plotly's default colour cycle); past ten runs the dash style changes too.
PALETTE = (
    "#636efa",
    "#ef553b",
    "#00cc96",
    "#ab63fa",
    "#ffa15a",
    "#19d3f3",
    "#ff6692",
    "#b6e880",
    "#ff97ff",
    "#fecb52",
)
DASHES = ("solid", "dash", "dot", "dashdot")

PLOTLY_HINT = "the HTML report needs plotly: pip install 'fleetsched[report]'"


@dataclass(slots=True)
class View:
    """One section of the page: a plotly figure with a title, a caption and extra HTML."""

    id: str
    title: str
    figure: Any
    note: str = ""
    html: str = ""


def require_plotly() -> None:
    """Raise :class:`InputError` with the install hint when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise InputError(PLOTLY_HINT) from None


def go() -> Any:
    require_plotly()
    import plotly.graph_objects

    return plotly.graph_objects


def subplots(**kw: Any) -> Any:
    require_plotly()
    from plotly.subplots import make_subplots

    return make_subplots(**kw)


def line_style(i: int) -> dict[str, Any]:
    return {"color": PALETTE[i % len(PALETTE)], "dash": DASHES[(i // len(PALETTE)) % len(DASHES)]}


def f32(values: Any) -> np.ndarray:
    """A float32 copy: half the bytes of float64 in the page, and 7 digits are plenty for a
    plot (plotly.py embeds numpy arrays as base64 typed arrays)."""
    return np.asarray(values, dtype=np.float32)


def base_layout(fig: Any, height: int = 420) -> None:
    fig.update_layout(
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "y": -0.18, "x": 0},
        hovermode="closest",
    )


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def html_table(headers: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A plain HTML table; columns from ``numeric_from`` on are right-aligned."""
    head = "".join(
        f"<th{' class=num' if i >= numeric_from else ''}>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i >= numeric_from else ''}>{esc(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
