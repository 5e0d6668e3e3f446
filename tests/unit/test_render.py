"""linkserver.render: SVG sizes, the pixel cap, and PNG drawn from SVG."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkserver import render

CIRCLE = ('<svg width="200px" height="100px" xmlns="http://www.w3.org/2000/svg" '
          'viewBox="0 0 200 100"><circle cx="50" cy="50" r="40" fill="black"/></svg>')


def _size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_sizes_are_read_from_the_root_element_only() -> None:
    assert render.svg_size(CIRCLE) == (200.0, 100.0)
    inner = '<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="7"/></svg>'
    assert render.svg_size(inner) == (render.DEFAULT_SIZE, render.DEFAULT_SIZE)
    assert render.svg_size("no svg at all") == (render.DEFAULT_SIZE, render.DEFAULT_SIZE)


def test_resize_changes_only_the_root() -> None:
    resized = render.resize_svg(CIRCLE, 20, 10)
    assert 'width="20px"' in resized and 'height="10px"' in resized
    assert 'r="40"' in resized and resized.endswith("</svg>")


@given(st.floats(1, 10_000), st.floats(1, 10_000), st.integers(1, 10**7))
def test_fit_keeps_under_the_cap_and_the_shape(width: float, height: float, cap: int) -> None:
    size = render.fit(width, height, cap)
    assert size.width >= 1 and size.height >= 1
    if width * height <= cap:
        assert size.note is None and (size.width, size.height) == (round(width), round(height))
    else:
        assert size.note is not None and f"at most {cap:,}" in size.note
        # Rounding may add at most a pixel each way; the shape is kept to that pixel.
        assert (size.width - 1) * (size.height - 1) <= cap
        if size.width > 1 and size.height > 1:
            assert abs(size.width / size.height - width / height) <= (
                width / height) * (1 / size.height + 1 / size.width) + 1e-9


def test_png_is_drawn_at_the_declared_size_or_under_the_cap() -> None:
    assert _size(render.svg_to_png(CIRCLE)) == (200, 100)
    assert _size(render.svg_to_png(CIRCLE, max_pixels=200)) == (20, 10)


def test_what_is_no_svg_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        render.svg_to_png("<svg <<")
