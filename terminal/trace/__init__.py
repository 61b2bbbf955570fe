"""Card exchanges as trace files (docs/traces.md): the format (:mod:`.format`) and the
recording of a live terminal's exchanges, holder data masked (:mod:`.record`)."""
