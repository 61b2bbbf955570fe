"""What the terminal needs of its devices, as small interfaces and the events they raise:
card readers and the APDU channel (:mod:`.reader`), code scanners and their serial framing
(:mod:`.scanner`, :mod:`.scanframe`), the PIN pad (:mod:`.pinpad`). Back-ends live in
``drivers/``."""
