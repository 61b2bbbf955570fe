"""The specification tables the simulated cards are written from.

Each module here transcribes one specification's tables - status words, command bytes, file
identifiers, record layouts - with the specification's own name beside every constant. They
are written from the specifications (docs/ and /work/shared/docs/domain.md), never imported
from the terminal: when the terminal and the simulator disagree about a table, a test fails.

==================  =====================================================================
:mod:`.status`      ISO/IEC 7816-4 and SSC/PBOC status words
:mod:`.iso7816`     CLA and INS bytes, SELECT and READ RECORD parameters, Le limits,
                    GET CHALLENGE lengths, the FCI template tags
:mod:`.ssc`         the social security application (SSSE): DF name, EF05/EF06 layout,
                    card number and citizen ID checks, key ids, diversification factor
:mod:`.tunion`      the T-Union e-purse (JT/T 978, PBOC e-purse): AID, SFIs, file layouts,
                    commands, algorithm ids
:mod:`.psam`        the PSAM's social security application: AID, commands, key usages
:mod:`.pki`         the PKI application of 3.0 cards (project choice, docs/pki.md)
==================  =====================================================================
"""
