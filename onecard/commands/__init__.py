"""The ``onecard`` subcommands, one module per group (card, code, journal, run, sync,
screen); :data:`onecard.cli.COMMAND_GROUPS` is the table that registers them, with the
simulator's and the back office's own."""
