"""The ``neft`` command line (README, 'Command line'): one parser, each command's arguments and handler. May import
every other package."""

from neft.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
