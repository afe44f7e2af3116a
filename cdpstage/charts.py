"""Small server-side SVG charts for the dashboard (the machines have no CDN; no JS library)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    max_value: int


def bar_chart(points: list[tuple[str, int]], *, width: int = 560, height: int = 140) -> BarChart:
    """Lay out one bar per (label, value); the template draws the rects and labels."""
    max_value = max((value for _, value in points), default=0)
    plot_height = height - 20  # room for the labels below the bars
    slot = width / max(len(points), 1)
    bars = []
    for index, (label, value) in enumerate(points):
        bar_height = (value / max_value) * plot_height if max_value else 0
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.1, 1),
                y=round(plot_height - bar_height, 1),
                width=round(slot * 0.8, 1),
                height=round(bar_height, 1),
                label=label,
                value=value,
            )
        )
    return BarChart(width=width, height=height, bars=bars, max_value=max_value)
