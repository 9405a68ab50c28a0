"""``omics-cl`` command line: argument parsing (``parser``), input checks and readers (``inputs``) and the
subcommands (``commands``, ``map``); the work is done by ``omics_cl.tl``."""
from __future__ import annotations

import sys

from omics_cl.cli.parser import build_parser
from omics_cl.cli_io import REPORTED, error_message

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except REPORTED as err:
        print(f"omics-cl {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2
