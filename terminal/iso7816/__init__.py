"""ISO/IEC 7816 codecs, pure functions over bytes: command and response APDUs
(:mod:`.apdu`), status words (:mod:`.status_words`), SIMPLE-/BER-TLV and the FCI
(:mod:`.tlv`), the ATR's historical bytes (:mod:`.atr`)."""
