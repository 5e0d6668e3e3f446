"""Graphics as pictures: SVG sizes, a cap on pixels, and PNG from SVG.

Mathics3 exports graphics as SVG only; notebooks and agent hosts want PNG beside it
(an agent host shows ``image/png`` to its model and may drop ``image/svg+xml``). The
PNG is drawn by resvg (the ``resvg-py`` wheel: a self-contained Rust renderer, no
system library), so it works on any machine the package installs on.

No I/O: text in, bytes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import resvg_py

__all__ = ["DEFAULT_SIZE", "Fitted", "fit", "resize_svg", "svg_size", "svg_to_png"]

#: The size assumed for an ``<svg>`` that declares none (Mathics3's default image size).
DEFAULT_SIZE = 400.0

_SIZE = re.compile(r'\b(width|height)="([\d.]+)(px)?"')


def _root(svg: str) -> tuple[int, int]:
    """Where the root ``<svg ...>`` tag starts and ends (0, 0 if there is none)."""
    start = svg.find("<svg")
    if start < 0:
        return 0, 0
    return start, svg.find(">", start) + 1


def svg_size(svg: str) -> tuple[float, float]:
    """The width and height the root ``<svg>`` element declares (:data:`DEFAULT_SIZE` if not)."""
    start, end = _root(svg)
    size = {key: float(value) for key, value, _ in _SIZE.findall(svg[start:end])}
    return size.get("width") or DEFAULT_SIZE, size.get("height") or DEFAULT_SIZE


def resize_svg(svg: str, width: float, height: float) -> str:
    """The SVG with its root's declared width and height replaced (its viewBox scales it)."""
    start, end = _root(svg)
    root = _SIZE.sub(
        lambda m: f'{m.group(1)}="{width if m.group(1) == "width" else height:.0f}px"',
        svg[start:end])
    return svg[:start] + root + svg[end:]


@dataclass(frozen=True, slots=True)
class Fitted:
    """A picture's size once it is made to fit a pixel cap.

    Attributes:
        width, height: the size to draw, in whole pixels (at least 1 each).
        note: a sentence saying how it was scaled, or None when it fitted as it was.
    """

    width: int
    height: int
    note: str | None


def fit(width: float, height: float, max_pixels: int) -> Fitted:
    """Scale ``width`` x ``height`` down, keeping its shape, to at most ``max_pixels`` pixels."""
    scale = min(1.0, (max_pixels / max(width * height, 1.0)) ** 0.5)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    note = None
    if scale < 1.0:
        note = (f"the image was scaled from {width:.0f}x{height:.0f} to {new_w}x{new_h} "
                f"pixels (at most {max_pixels:,})")
    return Fitted(new_w, new_h, note)


def svg_to_png(svg: str, *, max_pixels: int = 1_000_000) -> bytes:
    """Draw ``svg`` as PNG bytes, at its declared size or smaller to keep under ``max_pixels``.

    Raises:
        ValueError: the text is no SVG resvg can draw.
    """
    size = fit(*svg_size(svg), max_pixels)
    return bytes(resvg_py.svg_to_bytes(svg_string=svg, width=size.width, height=size.height))
