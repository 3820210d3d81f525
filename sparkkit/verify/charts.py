"""Small SVG charts for the report (no plotting library): a line chart and a bar chart."""

from __future__ import annotations

from xml.sax.saxutils import escape

W, H, LEFT, RIGHT, TOP, BOTTOM = 800, 360, 70, 240, 40, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10
    for mult in (1, 2, 2.5, 5, 10):
        if value <= step * mult:
            return step * mult
    return value


def _frame(title: str, y_label: str, y_max: float) -> list[str]:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{W / 2 - RIGHT / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
             f'<text x="16" y="{TOP + (H - TOP - BOTTOM) / 2}" transform="rotate(-90 16 '
             f'{TOP + (H - TOP - BOTTOM) / 2})" text-anchor="middle">{escape(y_label)}</text>']
    plot_h = H - TOP - BOTTOM
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')
    return parts


def line_chart(series: dict[str, list[tuple[float, float | None]]], *, title: str, x_label: str,
               y_label: str) -> str:
    points = [(x, y) for pts in series.values() for x, y in pts if y is not None]
    x_max = max((x for x, _ in points), default=1)
    y_max = _nice_max(max((y for _, y in points), default=1))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = _frame(title, y_label, y_max)

    def px(x):
        return LEFT + (plot_w * (x - 1) / max(x_max - 1, 1))

    def py(y):
        return TOP + plot_h - plot_h * y / y_max

    for x in range(1, int(x_max) + 1):
        parts.append(f'<text x="{px(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{x}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{H - 10}" text-anchor="middle">{escape(x_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts if y is not None)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for x, y in pts:
            if y is not None:
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        ly = TOP + 14 + i * 18
        parts.append(f'<rect x="{W - RIGHT + 12}" y="{ly - 9}" width="12" height="4" fill="{color}"/>')
        parts.append(f'<text x="{W - RIGHT + 30}" y="{ly - 4}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def bar_chart(items: list[tuple[str, float]], *, title: str, y_label: str, line: tuple[str, float] | None = None) -> str:
    """Bars per label; ``line`` draws a labelled horizontal reference (e.g. the headroom left)."""
    values = [v for _, v in items] + ([line[1]] if line else [])
    y_max = _nice_max(max(values, default=1))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = _frame(title, y_label, y_max)
    slot = plot_w / max(len(items), 1)
    for i, (label, value) in enumerate(items):
        h = plot_h * value / y_max
        x = LEFT + i * slot + slot * 0.15
        parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                     f'fill="{COLORS[i % len(COLORS)]}"/>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{TOP + plot_h - h - 4:.1f}" text-anchor="middle">'
                     f'{value:.2f}</text>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                     f'font-size="10">{escape(label)}</text>')
    if line:
        y = TOP + plot_h - plot_h * line[1] / y_max
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#d62728" '
                     f'stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{W - RIGHT + 6}" y="{y + 4:.1f}" fill="#d62728">{escape(line[0])}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
