"""`share-check`: before the app starts (make run), say how people will sign in, or refuse to share it open.
`people`: the names signed in with the access token, and an admin's reset of a passphrase or removal of a name."""

from __future__ import annotations

import argparse
import getpass
import sys

from core import sharing
from core.cli.output import EXIT_OK
from core.errors import InvalidInput
from core.paths import data_dir
from core.sharing import admin, people


def register(sub, common: argparse.ArgumentParser) -> None:
    check = sub.add_parser(
        "share-check",
        parents=[common],
        help="before starting the app on HOST: how people sign in; refuses a shared app nobody can sign in to",
    )
    check.add_argument("--host", default="127.0.0.1", help="the address the app will listen on")
    check.add_argument("--port", type=int, default=8501)
    check.set_defaults(handler=cmd_share_check)

    names = sub.add_parser(
        "people",
        parents=[common],
        help="the names signed in with the access token; reset a forgotten passphrase or remove a name",
    )
    names.add_argument("action", choices=("list", "reset", "remove"), nargs="?", default="list")
    names.add_argument("name", nargs="?", help="the name to reset or remove (any spelling that reads as it)")
    names.set_defaults(handler=cmd_people)


def cmd_share_check(args: argparse.Namespace) -> int:

    data_root = data_dir(args.data_dir)
    try:
        how = sharing.check_ready(args.host, data_root)
    except sharing.NotReadyToShare as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = "localhost" if args.host in ("127.0.0.1", "::1", "localhost") else args.host
    url = f"http://{shown if shown not in ('0.0.0.0', '::') else '<this machine>'}:{args.port}"
    if how == "local":
        print(f"Flora on this machine only: {url} (to share it: make run HOST=0.0.0.0)", file=sys.stderr)
    elif how == "oidc":
        print(
            f"Flora shared at {url}: people sign in with OpenID Connect ({sharing.oidc_configured()})", file=sys.stderr
        )
    else:
        token = sharing.access_token(data_root)
        print(f"Flora shared at {url}: people sign in with the access token:", file=sys.stderr)
        print(f"  {url}/?token={token}", file=sys.stderr)
        if sharing.admin_token():
            print(f"  admins: {url}/?token=<FLORA_ADMIN_TOKEN>", file=sys.stderr)
        else:
            print(f"  (set {sharing.ADMIN_TOKEN_ENV} for an admin's sign-in)", file=sys.stderr)
    if how == "oidc" and not sharing.admins():
        print(
            f"note: no admins set ({sharing.ADMINS_ENV}); nobody can delete others' runs or start the server",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_people(args: argparse.Namespace) -> int:

    data_root = data_dir(args.data_dir)
    if args.action == "list":
        for row in people.registered(data_root):
            notes = [row["state"]]
            if row["looks_like"]:
                notes.append(f"reads as {row['looks_like']!a}")
            if row["breaks_rule"]:
                notes.append(f"refused today: {row['breaks_rule']}")
            print(f"{ascii(row['name'])[1:-1]}\t{'; '.join(notes)}")
        return EXIT_OK
    if not args.name:
        raise InvalidInput(f"give the name to {args.action}: python -m core people {args.action} NAME")
    do = admin.reset_passphrase if args.action == "reset" else admin.remove_name
    done = do(data_root, args.name, by=f"{getpass.getuser()} (command line)")
    print(done.words(people.RESET if args.action == "reset" else people.REMOVED), file=sys.stderr)
    return EXIT_OK
