"""``omics-cl`` command line: argument parsing (``parser``), input checks and readers (``inputs``) and the
subcommands (``commands``, ``map``); the work is done by ``omics_cl.tl``."""
from __future__ import annotations

import sys

from omics_cl.cli.parser import build_parser
from omics_cl.cli_io import REPORTED, error_message
from omics_cl.settings import compilation_cache, compilation_cache_wanted

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if compilation_cache_wanted():
        compilation_cache()
    try:
        return args.func(args)
    except REPORTED as err:
        print(f"omics-cl {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2
