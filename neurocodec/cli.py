"""neurocodec command line. The image and audio codecs arrive in later releases."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="neurocodec", description="Learned codecs with real bitstreams.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the codecs shipped in this installation")
    a = p.parse_args(argv)
    if a.cmd == "list":
        print("no codecs are shipped in this version yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
