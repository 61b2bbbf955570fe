"""The exit codes of ``onecard``: one per kind of failure, so scripts can tell them apart
without parsing text (README's table)."""

from __future__ import annotations

from terminal.errors import (
    CardError,
    CardRemovedError,
    ConfigError,
    NoCardError,
    NoReaderError,
    NoTransitApplicationError,
    NotSocialSecurityCardError,
    OneCardError,
    ParseError,
    PcscUnavailableError,
)

EXIT_CODES: dict[type[OneCardError], int] = {
    NoReaderError: 3,
    NoCardError: 4,
    NotSocialSecurityCardError: 5,
    CardRemovedError: 6,
    PcscUnavailableError: 7,
    ParseError: 8,
    CardError: 9,
    ConfigError: 10,
    NoTransitApplicationError: 16,
}

EXIT_HELP = """\
exit codes:
  0 success            3 no reader          4 no card
  5 not a social security card               6 card removed during the read
  7 PC/SC service (pcscd) not running        8 malformed card answer
  9 card refused a command                   10 bad configuration or profile
  11 wrong PIN                               12 PIN blocked
  13 card not genuine (verify), code not valid (code verify)
  14 sync round failed (sync --once)         15 card is hotlisted (hotlist lookup)
  16 no T-Union e-purse on the card (purse)
  1 any other error
"""


def exit_code(error: OneCardError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


EXIT_NOT_GENUINE = 13
EXIT_PIN_WRONG = 11
EXIT_PIN_BLOCKED = 12
