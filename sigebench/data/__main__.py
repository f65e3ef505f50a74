"""Command line for the data layer.

Usage::

    python -m sigebench.data list [NAME ...] [--root DIR]
    python -m sigebench.data fetch NAME [--item PATH ...] [--root DIR] [--mirror DIR_OR_URL] [--quiet]
    python -m sigebench.data verify NAME [NAME ...] [--root DIR]
    python -m sigebench.data path NAME ITEM [--root DIR] [--mirror DIR_OR_URL] [--quiet]

Exit status 0 on success, 1 on a data error (one line on stderr, no traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .download import data_path, data_root, fetch, item_status, mirror_setting, verify
from .errors import DataError
from .manifest import list_manifests, load_manifest


def _human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _cmd_list(args: argparse.Namespace) -> int:
    names = args.names or list_manifests()
    root = data_root(args.root)
    print(f"data root: {root}   mirror: {mirror_setting() or '(none)'}")
    for name in names:
        m = load_manifest(name)
        print(f"{m.name}: {len(m.items)} item(s) under {root / m.root if m.root else root}")
        for it in m.items:
            state = item_status(m, it, args.root)
            shown = f"{it.path} -> {it.extract_to}/" if it.archive else it.path
            check = "" if it.verified else "  [no checksum]"
            print(f"  {state:<10} {shown}  ({_human(it.size)}){check}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    paths = fetch(args.name, items=args.item or None, root=args.root, mirror=args.mirror, quiet=args.quiet)
    for p in paths.values():
        print(p)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    bad = 0
    for name in args.names:
        for path, state in verify(name, root=args.root).items():
            print(f"{name}: {state:<10} {path}")
            bad += state not in ("present", "unverified")
    if bad:
        print(f"error: {bad} item(s) missing or corrupt; run `python -m sigebench.data fetch NAME`", file=sys.stderr)
    return 1 if bad else 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(data_path(args.name, args.item, root=args.root, mirror=args.mirror, quiet=args.quiet))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m sigebench.data``."""
    p = argparse.ArgumentParser(prog="python -m sigebench.data", description="Fetch and verify declared datasets.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, mirror: bool) -> None:
        sp.add_argument("--root", help="data root (default: $SIGE_DATA or ./data)")
        if mirror:
            sp.add_argument("--mirror", help="folder, file:// or http(s):// base used instead of public URLs")
            sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    sp = sub.add_parser("list", help="list manifests and their items (present/missing)")
    sp.add_argument("names", nargs="*", metavar="NAME")
    common(sp, mirror=False)
    sp.set_defaults(func=_cmd_list)

    sp = sub.add_parser("fetch", help="fetch (and verify) a manifest's items")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--item", action="append", metavar="PATH", help="only this item (repeatable)")
    common(sp, mirror=True)
    sp.set_defaults(func=_cmd_fetch)

    sp = sub.add_parser("verify", help="hash present items against their checksums")
    sp.add_argument("names", nargs="+", metavar="NAME")
    common(sp, mirror=False)
    sp.set_defaults(func=_cmd_verify)

    sp = sub.add_parser("path", help="print the local path of a file, fetching it if needed")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("item", metavar="ITEM")
    common(sp, mirror=True)
    sp.set_defaults(func=_cmd_path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a data root under a file, permissions, a full disk: one line naming the path
        where = e.filename or args.__dict__.get("root") or "the data root"
        print(f"error: {e.strerror or e}: {where} (set SIGE_DATA or --root to a writable folder)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
