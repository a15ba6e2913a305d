"""`serve`, `alias` and `log`: put runs to work behind a REST server, name them, read what they answered."""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_OK, cell, emit_json, format_table
from core.errors import InvalidInput, NotFound
from core.paths import data_dir
from core.serving.aliases import AliasStore
from core.serving.decode_budget import DEFAULT_BUDGET_BYTES, DEFAULT_REQUEST_PIXELS
from core.serving.log import PredictionLog, parse_since
from core.serving.quota import FeedbackQuota


def register(sub, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="serve runs over HTTP (Open Inference Protocol, TF Serving REST, multipart /predict) and gRPC",
        description="Serve runs (or aliases) over HTTP until Ctrl-C. Docs at http://HOST:PORT/docs. "
        "Set FLORA_API_KEY to require 'Authorization: Bearer <key>' on everything but health.",
    )
    serve.add_argument("models", nargs="+", metavar="RUN_OR_ALIAS", help="run ids, unique prefixes or aliases")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8500)
    serve.add_argument(
        "--grpc-port",
        type=int,
        metavar="PORT",
        help="also serve the Open Inference Protocol over gRPC on this port (KServe's grpc_predict_v2; "
        "tritonclient.grpc works as is)",
    )
    serve.add_argument("--max-batch", type=int, default=32, help="most images per forward pass (1: no batching)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    serve.add_argument("--max-queue", type=int, default=512, help="requests waiting before 503 + Retry-After")
    serve.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024, help="largest request body (bytes)")
    serve.add_argument(
        "--no-ood", action="store_true", help="no out-of-distribution scores (skips computing a run's reference)"
    )
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="beyond 127.0.0.1 without FLORA_API_KEY: serve predictions to anyone anyway (feedback stays closed)",
    )
    serve.add_argument(
        "--decode-budget-mb",
        type=int,
        default=DEFAULT_BUDGET_BYTES // (1024 * 1024),
        help="memory all image decodes may hold at once; requests beyond it wait (then 503)",
    )
    serve.add_argument(
        "--max-request-megapixels",
        type=float,
        default=DEFAULT_REQUEST_PIXELS / 1e6,
        help="all images of one request together (413 beyond)",
    )
    serve.add_argument(
        "--feedback-per-client", type=int, default=FeedbackQuota.per_client, help="feedback items per client a day"
    )
    serve.add_argument(
        "--feedback-total", type=int, default=FeedbackQuota.total, help="feedback photos a dataset's folder holds"
    )
    serve.add_argument(
        "--trusted-proxies",
        default=os.environ.get("FLORA_TRUSTED_PROXIES", ""),
        metavar="ADDRESSES",
        help="reverse proxies (comma-separated addresses) whose X-Forwarded-For names the client for the feedback "
        "quota; default none: the connecting address is the client ($FLORA_TRUSTED_PROXIES)",
    )
    serve.add_argument("--job-dir", help=argparse.SUPPRESS)  # the app's background server
    add_runtime_option(serve)
    serve.set_defaults(handler=cmd_serve)

    alias = sub.add_parser("alias", parents=[common], help="point an alias (e.g. production) at a run, or list them")
    alias.add_argument("alias", nargs="?", metavar="ALIAS")
    alias.add_argument("run", nargs="?", metavar="RUN", help="a run id or unique prefix")
    alias.add_argument("--delete", action="store_true", help="remove ALIAS")
    alias.add_argument("--json", action="store_true")
    alias.set_defaults(handler=cmd_alias)

    log = sub.add_parser("log", parents=[common], help="read the prediction log")
    log.add_argument("--since", help="30m, 2h, 7d (ago), epoch seconds or an ISO date/time")
    log.add_argument("--run", help="only this run's predictions")
    log.add_argument("--model", help="only predictions asked of this model name (alias or run)")
    log.add_argument("--limit", type=int, help="the newest N rows")
    log.add_argument("--json", action="store_true")
    log.set_defaults(handler=cmd_log)


def cmd_serve(args: argparse.Namespace) -> int:
    from core.serving.registry import BatchOptions  # heavy: sklearn
    from core.serving.server import ServerLimits, serve  # heavy: fastapi

    store = store_of(args)
    limits = ServerLimits(
        decode_budget_bytes=args.decode_budget_mb * 1024 * 1024,
        max_request_pixels=int(args.max_request_megapixels * 1e6),
        feedback_per_client=args.feedback_per_client,
        feedback_total=args.feedback_total,
        trusted_proxies=args.trusted_proxies.strip(),
    )
    options = BatchOptions(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue)
    grpc = f" and gRPC on {args.host}:{args.grpc_port}" if args.grpc_port is not None else ""
    print(f"serving {', '.join(args.models)} on http://{args.host}:{args.port}{grpc} (docs: /docs)", file=sys.stderr)
    return serve(
        store,
        args.models,
        args.host,
        args.port,
        options,
        data_dir(args.data_dir),
        max_bytes=args.max_bytes,
        job_dir=args.job_dir,
        ood=not args.no_ood,
        allow_anonymous=args.allow_anonymous,
        limits=limits,
        grpc_port=args.grpc_port,
    )


def cmd_alias(args: argparse.Namespace) -> int:

    store = store_of(args)
    aliases = AliasStore(store.root)
    if args.delete:
        if not args.alias:
            raise InvalidInput("alias --delete needs the ALIAS to remove")
        if not aliases.remove(args.alias):
            raise NotFound(f"no alias {args.alias!r}")
        print(f"removed alias {args.alias}", file=sys.stderr)
        return EXIT_OK
    if args.alias and args.run:
        entry = aliases.set(args.alias, args.run)
        if args.json:
            emit_json({"alias": args.alias, **entry})
        else:
            moved = f" (was {entry['previous']})" if entry["previous"] else ""
            print(f"{args.alias} -> {entry['run_id']}{moved}")
        return EXIT_OK
    if args.alias:
        run_id = aliases.get(args.alias)
        if run_id is None:
            raise NotFound(f"no alias {args.alias!r}")
        print(run_id)
        return EXIT_OK
    listing = aliases.all()
    if args.json:
        emit_json(listing)
    elif listing:
        rows = [
            [name, entry["run_id"], _when(entry.get("updated_at")), entry.get("previous") or "-"]
            for name, entry in sorted(listing.items())
        ]
        print(format_table(["alias", "run", "since", "previous"], rows))
    else:
        print("no aliases; set one with: python -m core alias production RUN", file=sys.stderr)
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:

    store = store_of(args)
    since = parse_since(args.since) if args.since else None
    rows = PredictionLog.of_store(store.root).read(since=since, run_id=args.run, model=args.model, limit=args.limit)
    if args.json:
        emit_json(rows)
        return EXIT_OK
    if not rows:
        print("no predictions logged" + (" in that period" if since else ""), file=sys.stderr)
        return EXIT_OK
    headers = [
        "id",
        "time",
        "source",
        "model",
        "run_id",
        "label",
        "max_probability",
        "ood_flag",
        "latency_ms",
        "feedback_label",
    ]
    table = [[cell(_when(r["time"]) if h == "time" else r[h]) for h in headers] for r in rows]
    print(format_table(headers, table))
    return EXIT_OK


def _when(timestamp) -> str:
    if not timestamp:
        return "-"
    return datetime.datetime.fromtimestamp(float(timestamp)).strftime("%Y-%m-%d %H:%M:%S")
