"""What the terminal takes from the machine it runs on: the time (:mod:`.clock`), files
written atomically (:mod:`.atomicfile`, :mod:`.secretfile` for 0600 secrets) and log lines
(:mod:`.logformat`)."""
