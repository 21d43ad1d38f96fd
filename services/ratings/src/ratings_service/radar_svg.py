"""Draws the R-RAT-02 radar chart as a small standalone SVG (no plotting library)."""
from __future__ import annotations

import math
from html import escape

from contracts.vocab import RATING_AXES

LABELS = {"communication": "コミュニケーション", "clarity": "説明の丁寧さ・分かりやすさ", "expertise": "専門性",
          "analysis": "分析力", "execution": "実現力", "manners": "社会人マナー"}


def _point(cx: float, cy: float, r: float, i: int, n: int) -> tuple[float, float]:
    angle = -math.pi / 2 + 2 * math.pi * i / n  # first axis straight up, clockwise
    return cx + r * math.cos(angle), cy + r * math.sin(angle)


def _polygon(points, **attrs) -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = " ".join(f'{k.rstrip("_").replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<polygon points="{pts}" {extra}/>'


def render(expert_id: str, averages: dict[str, float], count: int, window_days: int, size: int = 360) -> str:
    cx = cy = size / 2
    radius = size * 0.32
    n = len(RATING_AXES)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 30}" '
             f'viewBox="0 0 {size} {size + 30}" role="img" font-family="sans-serif" font-size="11">',
             f"<title>{escape(expert_id)}: {count} ratings in the last {window_days} days</title>"]
    for level in range(1, 6):  # grid rings for scores 1..5
        ring = [_point(cx, cy, radius * level / 5, i, n) for i in range(n)]
        parts.append(_polygon(ring, fill="none", stroke="#ccc", stroke_width="1"))
    for i, axis in enumerate(RATING_AXES):
        x, y = _point(cx, cy, radius, i, n)
        parts.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="#ccc"/>')
        lx, ly = _point(cx, cy, radius + 22, i, n)
        anchor = "middle" if abs(lx - cx) < 5 else ("start" if lx > cx else "end")
        value = f" {averages[axis]:.1f}" if axis in averages else ""
        parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" data-axis="{axis}">'
                     f"{escape(LABELS[axis])}{value}</text>")
    if count:
        shape = [_point(cx, cy, radius * averages[a] / 5, i, n) for i, a in enumerate(RATING_AXES)]
        parts.append(_polygon(shape, fill="#3b82f6", fill_opacity="0.35", stroke="#1d4ed8", stroke_width="2",
                              class_="radar"))
    caption = f"{count} 件 / 直近 {window_days} 日" if count else f"直近 {window_days} 日の評価はまだありません"
    parts.append(f'<text x="{cx:.1f}" y="{size + 18}" text-anchor="middle">{escape(caption)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
