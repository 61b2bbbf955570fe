"""What the terminal takes from the machine it runs on: the time (:mod:`.clock`), files
written atomically (:mod:`.atomicfile`, :mod:`.secretfile` for 0600 secrets), operator
files read strictly (:mod:`.operatorfile`), its durable SQLite stores (:mod:`.sqlite`) and
log lines (:mod:`.logformat`)."""
