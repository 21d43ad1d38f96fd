"""The prime-account proof letter (R-ID-07): a real PDF to the registered head-office address, holding the one-time
code. The platform's mailroom (operators) prints and posts it; once posted, the stored PDF (and the code in it) is
dropped, so the code exists only on paper and as a digest."""
from __future__ import annotations

import io
from datetime import UTC, datetime

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

JA_FONT = "HeiseiKakuGo-W5"  # a standard CID font PDF viewers carry: nothing is embedded
pdfmetrics.registerFont(UnicodeCIDFont(JA_FONT))


def proof_letter_pdf(*, business_name: str, corporate_number: str, postal_code: str, address: str,
                     representative: str, code: str, expires_at: float) -> bytes:
    until = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d")
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, pageCompression=0)
    c.setTitle("Prime account confirmation code")
    w, h = A4
    y = h - 60

    def line(text: str, font: str = JA_FONT, size: int = 11, gap: int = 20) -> None:
        nonlocal y
        c.setFont(font, size)
        c.drawString(60, y, text)
        y -= gap

    line(f"〒{postal_code}")
    line(address)
    line(f"{business_name}  {representative} 様", gap=40)
    line("支援ポータル プライムアカウント確認コードのお知らせ", size=14, gap=30)
    line(f"法人番号 / Corporate number: {corporate_number}")
    line("ポータルにログインし、次の確認コードを入力してください。", gap=30)
    line(f"CONFIRMATION CODE: {code}", font="Helvetica-Bold", size=18, gap=30)
    line(f"有効期限 / Valid until: {until} (UTC)")
    line("入力を3回誤るとコードは無効になり、再申請が必要です。")
    line("Three wrong entries void the code; you then apply again for a new letter.", font="Helvetica", size=10)
    line("心当たりのない場合は、このお知らせを破棄し窓口までご連絡ください。")
    c.showPage()
    c.save()
    return buf.getvalue()
