"""Manage the gateway's API keys from the command line.

    python -m services.security.keys_cli --database-url URL create --tenant acme \\
        --name demo --roles user [--models a,b] [--budget-usd 5]
    python -m services.security.keys_cli list [--tenant acme] [--json]
    python -m services.security.keys_cli revoke KEY_ID

``create`` prints the new key alone on standard output, once, and the details on
standard error, so ``KEY=$(python -m services.security.keys_cli create ...)`` captures
only the key. ``list`` never shows keys. The database URL may also come from
``SECURITY_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from libs.errors import GatewayError
from services.security.apikeys import ApiKeyRecord, ApiKeyStore

DATABASE_URL_VARIABLE = "SECURITY_DATABASE_URL"


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.security.keys_cli",
        description="Create, list and revoke the gateway's API keys.",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"PostgreSQL URL of the security database (default: ${DATABASE_URL_VARIABLE})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True, help="tenant the key belongs to")
    create.add_argument("--name", required=True, help="label for the key, such as its owner")
    create.add_argument(
        "--roles", required=True, type=_names, help="comma-separated roles, such as user,premium"
    )
    create.add_argument(
        "--models",
        default=[],
        type=_names,
        help="comma-separated model names the key is limited to (default: no limit)",
    )
    create.add_argument(
        "--budget-usd",
        type=float,
        default=None,
        help="spending limit in US dollars (default: none)",
    )

    listing = commands.add_parser("list", help="list keys without their secrets")
    listing.add_argument("--tenant", default=None, help="only keys of this tenant")
    listing.add_argument("--json", action="store_true", help="print one JSON object per key")

    revoke = commands.add_parser("revoke", help="revoke a key by its public id")
    revoke.add_argument("key_id", help="public id of the key (the 8 characters after sk-aigw-)")
    return parser


def _record_json(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "tenant": record.tenant,
        "name": record.name,
        "roles": list(record.roles),
        "allowed_models": list(record.allowed_models),
        "budget_usd": record.budget_usd,
        "created_at": record.created_at.isoformat(),
        "revoked_at": None if record.revoked_at is None else record.revoked_at.isoformat(),
    }


def _time_text(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S%z")


def _print_table(records: Sequence[ApiKeyRecord], out: TextIO) -> None:
    header = ("ID", "TENANT", "NAME", "ROLES", "MODELS", "BUDGET_USD", "CREATED", "REVOKED")
    rows = [header]
    for record in records:
        rows.append((
            record.id,
            record.tenant,
            record.name,
            ",".join(record.roles),
            ",".join(record.allowed_models) or "-",
            "-" if record.budget_usd is None else f"{record.budget_usd:g}",
            _time_text(record.created_at),
            _time_text(record.revoked_at),
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


async def run(
    argv: Sequence[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command and return the process exit code (0 success, 1 failure, 2 usage)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    database_url = args.database_url or os.environ.get(DATABASE_URL_VARIABLE)
    if not database_url:
        print(
            f"error: no database URL: pass --database-url or set {DATABASE_URL_VARIABLE}", file=err
        )
        return 2

    try:
        store = await ApiKeyStore.open(database_url, cache_ttl_s=0)
    except GatewayError as exc:
        print(f"error: {exc.message}", file=err)
        return 1
    try:
        if args.command == "create":
            key, record = await store.create(
                tenant=args.tenant,
                name=args.name,
                roles=args.roles,
                allowed_models=args.models,
                budget_usd=args.budget_usd,
            )
            print(key, file=out)
            print(
                f"created key {record.id} for tenant {record.tenant} "
                f"(roles: {','.join(record.roles)}). Store it now: it is not shown again.",
                file=err,
            )
        elif args.command == "list":
            records = await store.list(args.tenant)
            if args.json:
                for record in records:
                    print(json.dumps(_record_json(record)), file=out)
            else:
                _print_table(records, out)
        else:
            if not await store.revoke(args.key_id):
                print(f"error: no active key with id {args.key_id!r}", file=err)
                return 1
            print(f"revoked key {args.key_id}", file=out)
    except GatewayError as exc:
        print(f"error: {exc.message}", file=err)
        return 1
    finally:
        await store.close()
    return 0


def main() -> None:
    """Run the command line and exit with its status."""
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
