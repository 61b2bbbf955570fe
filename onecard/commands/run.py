"""``onecard run``: the terminal runtime, all day, until SIGTERM."""

from __future__ import annotations

import argparse
import json

from terminal.errors import ConfigError
from terminal.runtime.config import PROFILES, load_config


def cmd_run(args: argparse.Namespace) -> int:
    from onecard.runtime import build_runtime

    config = load_config(args.config)
    if args.profile != config.profile:
        raise ConfigError(
            f"--profile {args.profile} but {args.config} configures profile {config.profile!r}"
        )
    runtime = build_runtime(config)
    runtime.install_signal_handlers()
    if runtime.status_server is None and config.status.port >= 0:
        runtime.start_sources()
    if runtime.status_server is not None:
        print(
            json.dumps({"event": "started", "status_port": runtime.status_server.port}),
            flush=True,
        )
    code = runtime.run(once_for=args.once_for)
    print(json.dumps({"event": "stopped", "transactions": runtime.completed}), flush=True)
    return code


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="run the terminal: gate, validator or counter (until SIGTERM)",
        description=(
            "Run the acceptance point described by --config (terminal.toml, see "
            "docs/runtime.md): card events from the PC/SC readers and codes from the scanners, "
            "each processed read -> verify -> decide -> act -> journal -> tell. SIGTERM or "
            "SIGINT finishes the current transaction, then exits 0."
        ),
    )
    p.add_argument("--profile", required=True, choices=PROFILES)
    p.add_argument("--config", required=True, help="terminal.toml")
    p.add_argument("--once-for", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.set_defaults(func=cmd_run)
