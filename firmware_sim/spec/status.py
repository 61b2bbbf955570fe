"""Status words (ISO/IEC 7816-4 section 5.6, SSC specification part 5, PBOC e-purse).

A table of the fixed status words by the specification's name, and the three families that
carry a number in SW2: ``61xx`` (bytes available), ``6Cxx`` (exact Le) and ``63Cx`` (tries
left). Written from the specifications for the simulated cards; the terminal has its own.
"""

from __future__ import annotations

import enum


class SW(enum.IntEnum):
    """Fixed status words, named as the specifications name them."""

    NORMAL_PROCESSING = 0x9000  # 正常处理
    END_OF_FILE_REACHED = 0x6282  # 读到的数据少于 Le: end of file before Le bytes
    SELECTED_FILE_INVALIDATED = 0x6283  # 选择的文件无效 (a blocked e-purse, FCI still answered)
    WRONG_LENGTH = 0x6700  # 长度错误 (Lc or Le wrong)
    COMMAND_INCOMPATIBLE_WITH_FILE_STRUCTURE = 0x6981  # 命令与文件结构不相容
    SECURITY_STATUS_NOT_SATISFIED = 0x6982  # 不满足安全状态
    AUTHENTICATION_METHOD_BLOCKED = 0x6983  # 认证方法锁定 (PIN / key blocked)
    REFERENCED_DATA_INVALIDATED = 0x6984  # 引用数据无效 (no challenge to use)
    CONDITIONS_OF_USE_NOT_SATISFIED = 0x6985  # 使用条件不满足
    COMMAND_NOT_ALLOWED_NO_CURRENT_EF = 0x6986  # 不满足命令执行条件 (no current EF)
    SECURE_MESSAGING_DATA_INCORRECT = 0x6988  # 安全报文数据项不正确 (MAC wrong)
    INCORRECT_DATA = 0x6A80  # 数据域参数不正确
    FUNCTION_NOT_SUPPORTED = 0x6A81  # 功能不支持
    FILE_NOT_FOUND = 0x6A82  # 文件或应用未找到
    RECORD_NOT_FOUND = 0x6A83  # 记录未找到
    INCORRECT_P1_P2 = 0x6A86  # 参数 P1 P2 不正确
    REFERENCED_DATA_NOT_FOUND = 0x6A88  # 引用数据未找到 (key id unknown)
    WRONG_P1_P2_OFFSET = 0x6B00  # 参数错误 (offset outside the EF)
    INS_NOT_SUPPORTED = 0x6D00  # 指令码不支持
    CLA_NOT_SUPPORTED = 0x6E00  # 类别不支持
    NO_PRECISE_DIAGNOSIS = 0x6F00  # 无精确诊断
    MAC_INVALID = 0x9302  # MAC 无效 (PBOC: MAC1 wrong on DEBIT, MAC2 wrong on the PSAM)
    APPLICATION_LOCKED = 0x9303  # 应用被永久锁定
    INSUFFICIENT_BALANCE = 0x9401  # 金额不足
    KEY_INDEX_NOT_SUPPORTED = 0x9403  # 密钥索引不支持
    MAC_NOT_AVAILABLE = 0x9406  # 所需 MAC 不可用 (GET TRANSACTION PROVE)


BYTES_AVAILABLE = 0x61
"""SW1 of ``61xx``: SW2 bytes wait for GET RESPONSE (T=0), 00 meaning 256 or more."""
WRONG_LE = 0x6C
"""SW1 of ``6Cxx``: wrong Le, SW2 is the exact length (00 meaning 256)."""
TRIES_LEFT = 0x63C0
"""``63Cx``: verification failed, x further tries."""


def bytes_available(length: int) -> int:
    """``61xx`` for ``length`` bytes waiting (SW2 00 when 256 or more)."""
    return BYTES_AVAILABLE << 8 | (min(length, 256) & 0xFF)


def wrong_le(length: int) -> int:
    """``6Cxx``: re-issue with Le = ``length`` (SW2 00 for 256)."""
    return WRONG_LE << 8 | (min(length, 256) & 0xFF)


def tries_left(count: int) -> int:
    """``63Cx`` for ``count`` (0..15) tries left."""
    if not 0 <= count <= 15:
        raise ValueError(f"63Cx holds 0..15 tries, not {count}")
    return TRIES_LEFT | count
