"""Holder data kept out of sight: keyed card tokens instead of card numbers
(:mod:`.cardtoken`) and masked identifiers for logs and screens (:mod:`.masking`)."""
