"""Who a transit card is, for the policy: the credential of a card known by its e-purse.

A plain T-Union (交通联合) card has no social security application, so nothing on it gives
a card number, a GB/T 2260 region or a card category. What file 0x15 gives instead
(docs/transit.md "A card known by its e-purse"):

* token: :func:`terminal.privacy.cardtoken.tunion_card_token` of the application serial - stable
  across taps (the serial is the key diversification input: it cannot change while the
  purse is the same), and apart from every SSC token;
* region: the province of its city code. T-Union cards carry the city code of GB/T
  13497-1992 (全国主要城市代码: Chongqing ``6900``, Chengdu ``6510``, Beijing ``1000``,
  Shanghai ``2900``; the list T-Union readers use), not a GB/T 2260 region; the policy's
  scopes need the province, so :data:`CITY_CODE_PROVINCES` maps the code's range to the
  GB/T 2260 province code (``6510`` -> ``"510000"``). A code outside every range, or not
  BCD, gives :data:`UNKNOWN_REGION`, which only the ``national`` scope accepts;
* category: unknown (None) - the card states none;
* expiry: the 0x15 expiry date.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from terminal.credential import CardKind, Credential, CredentialKind
from terminal.privacy.cardtoken import tunion_card_token
from terminal.transit.records import PublicInfo

UNKNOWN_REGION = "000000"
"""Region of a transit card whose city code maps to no province: 6 digits (the journal
wants them) that no province starts with, so only a ``national`` service accepts it."""

CITY_CODE_PROVINCES: tuple[tuple[int, int, str], ...] = (
    # (first, last) GB/T 13497 city codes of a province -> its GB/T 2260 province code.
    (1000, 1099, "110000"),  # 北京
    (1100, 1199, "120000"),  # 天津 (1121)
    (1200, 1599, "130000"),  # 河北 (1210 石家庄 .. 1460 廊坊)
    (1600, 1899, "140000"),  # 山西 (1610 太原 .. 1810 运城)
    (1900, 2099, "150000"),  # 内蒙古 (1910 呼和浩特 .. 2080 阿拉善)
    (2200, 2399, "210000"),  # 辽宁 (2210 沈阳 .. 2360 葫芦岛)
    (2400, 2599, "220000"),  # 吉林 (2410 长春 .. 2510 松原)
    (2600, 2799, "230000"),  # 黑龙江 (2610 哈尔滨 .. 2790)
    (2900, 2999, "310000"),  # 上海 (2900)
    (3000, 3199, "320000"),  # 江苏 (3010 南京 .. 3180 宿迁)
    (3300, 3499, "330000"),  # 浙江 (3310 杭州 .. 3450 台州)
    (3600, 3899, "340000"),  # 安徽 (3610 合肥 .. 3810 亳州)
    (3900, 4099, "350000"),  # 福建 (3910 福州 .. 4050 龙岩)
    (4200, 4499, "360000"),  # 江西 (4210 南昌 .. 4370 抚州)
    (4500, 4799, "370000"),  # 山东 (4510 济南 .. 4770 日照)
    (4900, 5199, "410000"),  # 河南 (4910 郑州 .. 5150 信阳)
    (5200, 5499, "420000"),  # 湖北 (5210 武汉 .. 5410 恩施)
    (5500, 5799, "430000"),  # 湖南 (5510 长沙 .. 5690 湘西)
    (5800, 6099, "440000"),  # 广东 (5810 广州, 5840 深圳 .. 6060 云浮)
    (6100, 6399, "450000"),  # 广西 (6110 南宁 .. 6360 崇左)
    (6400, 6499, "460000"),  # 海南 (6410 海口 .. 6434)
    (6500, 6899, "510000"),  # 四川 (6510 成都 .. 6880 资阳)
    (6900, 6999, "500000"),  # 重庆 (6900)
    (7000, 7199, "520000"),  # 贵州 (7010 贵阳 .. 7110 安顺)
    (7300, 7599, "530000"),  # 云南 (7310 昆明 .. 7580 临沧)
    (7700, 7899, "540000"),  # 西藏 (7710 拉萨 .. 7830 林芝)
    (7900, 8099, "610000"),  # 陕西 (7910 西安 .. 8060 榆林)
    (8200, 8399, "620000"),  # 甘肃 (8210 兰州 .. 8380 甘南)
    (8500, 8699, "630000"),  # 青海 (8510 西宁 .. 8590)
    (8700, 8799, "640000"),  # 宁夏 (8710 银川 .. 8750)
    (8800, 9099, "650000"),  # 新疆 (8810 乌鲁木齐 .. 9047)
)
"""GB/T 13497 city-code ranges by province, from the published city list T-Union readers
use; one table, so a code found elsewhere in the field is one line here."""
_RANGE_STARTS = [first for first, _last, _province in CITY_CODE_PROVINCES]


def purse_region(city_code: bytes) -> str:
    """The GB/T 2260 province of a T-Union city code (0x15 bytes 2-3, GB/T 13497 BCD):
    ``69 00`` (Chongqing) -> ``"500000"``, ``65 10`` (Chengdu) -> ``"510000"``;
    :data:`UNKNOWN_REGION` when the code is not 4 BCD digits or lies in no province's range."""
    digits = bytes(city_code).hex()
    if len(digits) != 4 or not digits.isdigit():
        return UNKNOWN_REGION
    code = int(digits)
    index = bisect.bisect_right(_RANGE_STARTS, code) - 1
    if index < 0:
        return UNKNOWN_REGION
    _first, last, province = CITY_CODE_PROVINCES[index]
    return province if code <= last else UNKNOWN_REGION


def purse_credential(
    info: PublicInfo, token_key: bytes, card_types: Mapping[int, str] | None = None
) -> Credential:
    """The credential of a card known only by its e-purse (:attr:`CardKind.TUNION`).
    ``card_types`` maps the 0x15 card type (byte 28) to a category (``[transit]
    card_types``: which value means an elderly or student card is each issuer's, so it is
    configuration); a type not in it is an unknown category, which pays the full fare."""
    token = tunion_card_token(token_key, info.app_serial)
    return Credential(
        kind=CredentialKind.CARD,
        card_token=token,
        region=purse_region(info.city_code),
        category=(card_types or {}).get(info.card_type),
        expiry=info.expiry_date,
        card_kind=CardKind.TUNION,
        purse_token=token,
    )
