"""Where a business is, as far as dispatch knows it: the seat of its prefecture's government (identity publishes the
prefecture, not the address), and distances on the sphere. Pure data."""
from __future__ import annotations

from math import asin, cos, radians, sin, sqrt

# Prefectural capitals (latitude, longitude), rounded to 0.01°.
CENTRES: dict[str, tuple[float, float]] = {
    "北海道": (43.06, 141.35), "青森": (40.82, 140.74), "岩手": (39.70, 141.15), "宮城": (38.27, 140.87),
    "秋田": (39.72, 140.10), "山形": (38.24, 140.36), "福島": (37.75, 140.47), "茨城": (36.34, 140.45),
    "栃木": (36.57, 139.88), "群馬": (36.39, 139.06), "埼玉": (35.86, 139.65), "千葉": (35.61, 140.12),
    "東京": (35.69, 139.69), "神奈川": (35.45, 139.64), "新潟": (37.90, 139.02), "富山": (36.70, 137.21),
    "石川": (36.59, 136.63), "福井": (36.07, 136.22), "山梨": (35.66, 138.57), "長野": (36.65, 138.18),
    "岐阜": (35.39, 136.72), "静岡": (34.98, 138.38), "愛知": (35.18, 136.91), "三重": (34.73, 136.51),
    "滋賀": (35.00, 135.87), "京都": (35.02, 135.76), "大阪": (34.69, 135.52), "兵庫": (34.69, 135.18),
    "奈良": (34.69, 135.83), "和歌山": (34.23, 135.17), "鳥取": (35.50, 134.24), "島根": (35.47, 133.05),
    "岡山": (34.66, 133.93), "広島": (34.40, 132.46), "山口": (34.19, 131.47), "徳島": (34.07, 134.56),
    "香川": (34.34, 134.04), "愛媛": (33.84, 132.77), "高知": (33.56, 133.53), "福岡": (33.61, 130.42),
    "佐賀": (33.25, 130.30), "長崎": (32.74, 129.87), "熊本": (32.79, 130.74), "大分": (33.24, 131.61),
    "宮崎": (31.91, 131.42), "鹿児島": (31.56, 130.56), "沖縄": (26.21, 127.68),
}


def centre(prefecture: str | None) -> tuple[float, float] | None:
    """The prefecture's seat, for '熊本県', '熊本' or '東京都' alike; None when unknown."""
    if not prefecture:
        return None
    name = prefecture.strip()
    if name != "北海道" and name[-1:] in ("県", "府", "都"):
        name = name[:-1]
    return CENTRES.get(name)


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in kilometres."""
    (la1, lo1), (la2, lo2) = (map(radians, a)), (map(radians, b))
    h = sin((la2 - la1) / 2) ** 2 + cos(la1) * cos(la2) * sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0 * asin(sqrt(h))
