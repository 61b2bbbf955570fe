"""The contract shared with the back office and the simulator: canonical JSON, signed
documents, journal entries, terminal events, request signing."""
