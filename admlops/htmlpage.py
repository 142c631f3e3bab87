"""Self-contained HTML pages, the reports' one shell: a KFP HTML artifact is a single file, so plots and images are
inline base64 PNG and no style or script is fetched."""
from __future__ import annotations

import base64
import html
import io


def png_base64(picture) -> str:
    """A matplotlib figure (at 80 dpi, tight) or a PIL image as base64 PNG."""
    buf = io.BytesIO()
    if hasattr(picture, "savefig"):
        picture.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    else:
        picture.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def img(png: str, alt: str, cls: str = "plot") -> str:
    return f"<img class='{cls}' alt='{html.escape(alt)}' src='data:image/png;base64,{png}'>"


def plot_section(title: str, png: str) -> str:
    """A titled plot: ``<h2>`` and its image (class ``plot``)."""
    return f"<h2>{html.escape(title)}</h2>{img(png, title)}"


def page(title: str, body: list[str], width: int = 1000, style: str = "", script: str = "") -> str:
    """The page: ``title``, the ``body`` parts in order, a readable column ``width`` px wide, extra CSS and script."""
    css = f"body{{font-family:sans-serif;max-width:{width}px;margin:auto}}img{{max-width:100%}}{style}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{css}</style>"
            f"{script}</head><body>{''.join(body)}</body></html>")
