"""Bar charts as server-rendered SVG, for admin pages that must work with no network access (no
script, no external asset). A pure function: bars in, markup out, every text and attribute escaped.

Each bar is a `<rect class="bar">` carrying its data as `data-*` attributes and a `<title>` tooltip,
so that a browser (or a test) reads the figures the chart was drawn from.
"""

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

# The drawing's coordinate system (the SVG scales to its container through its viewBox).
WIDTH = 760
HEIGHT = 250
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 34, 48
# Roughly how many x-axis labels fit side by side (a label is an ISO date, about 65 units wide).
MAX_X_LABELS = 8
_DATA_NAME = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar on the x-axis, e.g. the day "2026-12-04"
    value: Decimal | int  # its height; negative values are drawn as zero
    tooltip: str  # the bar's <title>
    data: Mapping[str, str] = field(default_factory=dict)  # data-<name>="<value>" attributes


def axis_ticks(top: Decimal, *, integer: bool = False) -> list[Decimal]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) from 0 to at least `top`.

    `integer`: no step below 1 (token counts have no fractions). Nothing to draw still gets an axis, 0 to 1.
    """
    if top <= 0:
        return [Decimal(0), Decimal(1)]
    raw = top / 4
    magnitude = Decimal(1).scaleb(raw.adjusted())
    normalized = raw / magnitude
    step = next(n for n in (Decimal(1), Decimal(2), Decimal(5), Decimal(10)) if normalized <= n) * magnitude
    if integer and step < 1:
        step = Decimal(1)
    count = math.ceil(top / step)
    return [step * i for i in range(count + 1)]


def _coordinate(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _data_attributes(data: Mapping[str, str]) -> SafeString:
    for name in data:
        # An attribute's name cannot be escaped, so only plain names are accepted.
        if not _DATA_NAME.fullmatch(name):
            raise ValueError(f"Not a data attribute name: {name!r}")
    return format_html_join("", ' data-{}="{}"', data.items())


def bar_chart(
    *,
    element_id: str,
    title: str,
    bars: Sequence[Bar],
    x_label: str,
    y_label: str,
    tick_text: Callable[[Decimal], str] = str,
    integer: bool = False,
) -> SafeString:
    """An SVG bar chart: `title` above, y-axis ticks labelled by `tick_text`, one bar per item in order.

    The x-axis labels every bar when they fit and every n-th one otherwise; each bar keeps its own
    label in `data-label` and in its tooltip. `element_id` is the `<svg>`'s id; its title's id is
    `<element_id>-title`.
    """
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    values = [max(Decimal(bar.value), Decimal(0)) for bar in bars]
    ticks = axis_ticks(max(values, default=Decimal(0)), integer=integer)
    axis_top = ticks[-1]

    def y(value: Decimal) -> float:
        return baseline - float(value / axis_top) * plot_height

    grid = format_html_join(
        "",
        '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ccc" stroke-width="0.5"></line>'
        '<text class="tick y-tick" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>',
        (
            (LEFT, LEFT + plot_width, _coordinate(y(tick)), _coordinate(y(tick)), LEFT - 6, _coordinate(y(tick)), text)
            for tick in ticks
            for text in [tick_text(tick)]
        ),
    )

    slot = plot_width / max(len(bars), 1)
    stride = max(1, math.ceil(len(bars) / MAX_X_LABELS))
    bar_rows = []
    label_rows = []
    for index, (bar, value) in enumerate(zip(bars, values, strict=True)):
        left = LEFT + index * slot
        top = y(value)
        bar_rows.append(
            (
                _coordinate(left + slot * 0.1),
                _coordinate(top),
                _coordinate(slot * 0.8),
                _coordinate(baseline - top),
                bar.label,
                f"{bar.value:f}" if isinstance(bar.value, Decimal) else str(bar.value),
                _data_attributes(bar.data),
                bar.tooltip,
            )
        )
        if index % stride == 0:
            label_rows.append((_coordinate(left + slot / 2), baseline + 16, bar.label))
    rects = format_html_join(
        "",
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="#417690"'
        ' data-label="{}" data-value="{}"{}><title>{}</title></rect>',
        bar_rows,
    )
    x_labels = format_html_join(
        "", '<text class="tick x-tick" x="{}" y="{}" text-anchor="middle">{}</text>', label_rows
    )
    return format_html(
        '<svg id="{id}" class="chart" role="img" aria-labelledby="{id}-title" viewBox="0 0 {width} {height}"'
        ' width="{width}" height="{height}" data-bars="{count}" font-size="11">'
        '<text id="{id}-title" class="chart-title" x="{left}" y="18" font-weight="bold" font-size="13">{title}</text>'
        "{grid}{rects}"
        '<line class="axis x-axis" x1="{left}" x2="{right}" y1="{baseline}" y2="{baseline}" stroke="#666"></line>'
        '<line class="axis y-axis" x1="{left}" x2="{left}" y1="{top}" y2="{baseline}" stroke="#666"></line>'
        "{x_labels}"
        '<text class="axis-label x-label" x="{middle}" y="{x_label_y}" text-anchor="middle">{x_label}</text>'
        '<text class="axis-label y-label" x="14" y="{y_middle}" text-anchor="middle"'
        ' transform="rotate(-90 14 {y_middle})">{y_label}</text>'
        "</svg>",
        id=element_id,
        width=WIDTH,
        height=HEIGHT,
        count=len(bars),
        left=LEFT,
        right=LEFT + plot_width,
        top=TOP,
        baseline=baseline,
        middle=_coordinate(LEFT + plot_width / 2),
        x_label_y=HEIGHT - 8,
        y_middle=_coordinate(TOP + plot_height / 2),
        title=title,
        grid=grid,
        rects=rects,
        x_labels=x_labels,
        x_label=x_label,
        y_label=y_label,
    )
