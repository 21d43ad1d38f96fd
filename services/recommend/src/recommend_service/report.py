"""The local benchmark report as a PDF (R-REC-06, R-ANC-04): Japanese text and a bar chart of the six scores, a
document a business can hand to a bank or attach to an application.

The Japanese font is embedded (subset) from Debian's `fonts-ipafont-gothic` (IPAGothic, TrueType: reportlab
cannot embed Noto CJK's CFF outlines); where that package is missing the standard CID font HeiseiKakuGo-W5 is
used instead (viewers carry it; nothing is embedded)."""
from __future__ import annotations

import io
import os
from datetime import datetime

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from recommend_service import benchmark

FONT_FILES = ("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf", "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf")
_font: str | None = None


def japanese_font(font_file: str = "") -> str:
    """The registered font name: IPAGothic embedded if its file is there (`font_file`, the BENCHMARK_FONT_FILE
    setting, first), else the CID font. Registered once per process."""
    global _font
    if _font is None:
        path = next((f for f in (font_file, *FONT_FILES) if f and os.path.isfile(f)), None)
        if path:
            pdfmetrics.registerFont(TTFont("IPAGothic", path))
            _font = "IPAGothic"
        else:
            pdfmetrics.registerFont(UnicodeCIDFont("HeiseiKakuGo-W5"))
            _font = "HeiseiKakuGo-W5"
    return _font


def benchmark_pdf(*, business_name: str, industry: str, result: dict, generated_at: datetime,
                  font_file: str = "") -> bytes:
    """R-REC-06: one A4 page — the six indicators with value, score and reason, the total and rank, a bar chart
    of the scores and the trend over three periods."""
    font = japanese_font(font_file)
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, pageCompression=0)
    c.setTitle(f"ローカルベンチマーク {business_name}")
    w, h = A4
    y = h - 56

    def text(x: float, s: str, size: int = 10) -> None:
        c.setFont(font, size)
        c.drawString(x, y, s)

    text(48, "ローカルベンチマーク（財務分析）報告書", 16)
    y -= 24
    fy = result.get("fiscal_year")
    text(48, f"事業者名: {business_name}    業種: {industry}    決算期: {f'{fy}年度' if fy else '—'}")
    y -= 16
    text(48, f"作成日時: {generated_at:%Y-%m-%d %H:%M} UTC    比較対象: 同業種の事業者（五分位で1〜5点）", 9)
    y -= 28
    for x, head in ((48, "指標"), (210, "値"), (290, "点数"), (330, "同業種"), (380, "備考")):
        text(x, head, 10)
    y -= 6
    c.line(48, y, w - 48, y)
    y -= 16
    for r in result["indicators"]:
        text(48, r["name"])
        text(210, benchmark.display(r["key"], r["value"]))
        text(290, f"{r['score']}点" if r["score"] is not None else "算出不可")
        text(330, f"{r['peers']}社")
        if r["reason"]:
            text(380, r["reason"][:40], 7)
        y -= 18
    y -= 6
    c.line(48, y, w - 48, y)
    y -= 22
    rank = result.get("rank")
    text(48, f"総合評価点: {result['total']}点 / {result['max_total']}点    評価: {rank or '算出不可'}", 13)
    if not rank and result.get("rank_reason"):
        y -= 14
        text(48, f"（{result['rank_reason'][:80]}）", 8)
    y -= 14
    text(48, f"評価の基準: A {benchmark.RANK_A}点以上 / B {benchmark.RANK_B}点以上 / C {benchmark.RANK_C}点以上 / D それ未満", 8)

    # bar chart of the six scores (0–5)
    y -= 30
    text(48, "指標別の点数", 11)
    top, chart_h, bar_w, gap, left = y - 14, 150, 48, 22, 80
    base = top - chart_h
    c.setStrokeColor(colors.grey)
    for s in range(6):
        yy = base + chart_h * s / 5
        c.line(left - 4, yy, left + 6 * (bar_w + gap), yy)
        c.setFont(font, 8)
        c.drawRightString(left - 8, yy - 3, str(s))
    for i, r in enumerate(result["indicators"]):
        x = left + gap / 2 + i * (bar_w + gap)
        if r["score"]:
            c.setFillColor(colors.HexColor("#3a6ea5"))
            c.rect(x, base, bar_w, chart_h * r["score"] / 5, stroke=0, fill=1)
        c.setFillColor(colors.black)
        c.setFont(font, 7)
        label = r["name"]
        for j, part in enumerate((label[:7], label[7:14]) if len(label) > 7 else (label,)):
            c.drawCentredString(x + bar_w / 2, base - 12 - j * 9, part)
    y = base - 44

    # trend over the three periods
    text(48, "3期の推移", 11)
    y -= 18
    periods = result.get("trend") or []
    text(48, "指標", 9)
    for j, p in enumerate(periods):
        text(220 + j * 110, f"{p['fiscal_year']}年度", 9)
    y -= 14
    for ind in benchmark.INDICATORS:
        text(48, ind.name, 9)
        for j, p in enumerate(periods):
            text(220 + j * 110, benchmark.display(ind.key, p["indicators"][ind.key]["value"]), 9)
        y -= 14
    y -= 10
    text(48, "値のない指標は、必要な財務数値が登録されていないか、意味を持たない（売上ゼロ・EBITDAが負など）ため算出していません。", 7)
    c.showPage()
    c.save()
    return buf.getvalue()
