"""`gs4` command line: run the SLAM pipeline on datasets and bags, convert, demo."""
from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys

# Subcommand modules; each exposes register(subparsers). Optional ones may be absent.
SUBCOMMANDS = ["gs4_ros.cli.run", "gs4_ros.cli.bag", "gs4_ros.cli.train", "gs4_ros.cli.query"]


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gs4", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # The command as given, for training records: `gs4 train recipe` calls main() with each
    # stage's argv, and a chunk's record must name that stage, not the recipe call.
    args.command_line = "gs4 " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("gs4: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                 # `gs4 query ... | head`: the reader left early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - user-facing errors become one clear line
        from ..core.frame import FrameError

        user_errors = (UserError, FrameError, FileNotFoundError, NotADirectoryError, KeyError, ValueError)
        try:
            from ..io.datasets import DatasetError

            user_errors = user_errors + (DatasetError,)
        except ImportError:
            pass
        if isinstance(e, user_errors) and not args.verbose:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"gs4: error: {msg}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
