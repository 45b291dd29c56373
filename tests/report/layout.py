"""Layout checks of matplotlib figures: the text a figure draws must not overlap."""

from __future__ import annotations

import io
import itertools
from typing import Any

from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from tpopk.report.payload import SAVEFIG

#: The axes each text of the last :func:`drawn_text` call belongs to (None: the figure's).
owners: list[Any] = []
#: Each visible panel and its box in the last :func:`drawn_text` rendering.
areas: list[tuple[Any, Bbox]] = []
#: Overlaps smaller than this many pixels each way are anti-aliasing, not collisions.
TOLERANCE = 1.0


def drawn_text(figure: Figure) -> tuple[list[tuple[str, Bbox]], Bbox]:
    """Every piece of text the saved figure holds, with its box in pixels, and the image's box.

    Recorded in the renderer while the figure is saved as the report saves it, so text
    that matplotlib lays out but does not draw (tick labels beyond the view limits, empty
    labels) is not counted, and sizes are those of the image.
    """
    found: list[tuple[str, Bbox]] = []
    owners.clear()
    areas.clear()
    size: list[Bbox] = []
    original = RendererAgg.draw_text

    def record(
        self: RendererAgg,
        gc: Any,
        x: float,
        y: float,
        s: str,
        prop: Any,
        angle: float,
        ismath: bool | str = False,
        mtext: Any = None,
    ) -> None:
        if s.strip() and mtext is not None:
            found.append((s, mtext.get_window_extent(self).frozen()))
            owners.append(mtext.axes)
            if not areas:  # panels as placed in this very rendering
                areas.extend(
                    (axes, axes.get_window_extent(self).frozen())
                    for axes in figure.axes
                    if axes.get_visible() and axes.patch.get_visible()
                )
            size[:] = [Bbox.from_bounds(0, 0, self.width, self.height)]
        original(self, gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    RendererAgg.draw_text = record  # type: ignore[method-assign]
    try:
        figure.savefig(io.BytesIO(), **SAVEFIG)
    finally:
        RendererAgg.draw_text = original  # type: ignore[method-assign]
    return found, size[0] if size else Bbox.from_bounds(0, 0, 0, 0)


def _overlap(a: Bbox, b: Bbox) -> bool:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width > TOLERANCE and height > TOLERANCE


def overlapping_text(figure: Figure) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap, and texts reaching into another panel.

    A text of one panel (a long y label) that reaches into the plotting area of another
    is hidden behind it: reported as ``(text, "panel <i>")``. Tick and axis labels have
    no owning axes in matplotlib; they sit outside their own panel, so any panel they
    reach into is another's. Text placed in a panel (``ax.text``) may lie inside it.
    """
    texts, _ = drawn_text(figure)
    text_owners = list(owners)
    pairs = [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(texts, 2)
        if _overlap(box_a, box_b)
    ]
    panels = list(areas)
    for (s, box), owner in zip(texts, text_owners, strict=True):
        pairs += [
            (s, f"panel {i}")
            for i, (axes, area) in enumerate(panels)
            if axes is not owner and _overlap(box, area)
        ]
    return pairs


def clipped_text(figure: Figure) -> list[str]:
    """Drawn texts that reach outside the saved image (cut off)."""
    texts, image = drawn_text(figure)
    return [
        s
        for s, box in texts
        if box.x0 < image.x0 - TOLERANCE
        or box.y0 < image.y0 - TOLERANCE
        or box.x1 > image.x1 + TOLERANCE
        or box.y1 > image.y1 + TOLERANCE
    ]
