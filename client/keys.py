"""`catdog keys`: make, list and revoke API keys, on a host that reaches the service's Redis
(`CATDOG_REDIS_URL`). The secret is printed once, at creation; Redis keeps only its digest.

    catdog keys create --name SHELTER [--expires-in-days N] [--rps R] [--burst B]
                       [--max-jobs J] [--max-bytes N]
    catdog keys list
    catdog keys revoke KEY_ID

Rotating a key: create the new one, give it to the shelter, revoke the old one.
"""

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from common.settings import get_settings
from common.store import api_keys
from common.store.api_keys import ApiKey
from common.store.ops import Store

DAY_S = 24 * 3600


def _store() -> Store:
    return Store.from_url(get_settings().redis_url)


def create_key(store: Store, name: str, **options: Any) -> tuple[str, ApiKey]:
    """A new key: its secret (show it once) and its record (saved)."""
    secret = api_keys.new_secret()
    key = ApiKey.issue(name, secret, **options)
    store(api_keys.save(key))
    return secret, key


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else "-"


def cmd_create(_: object, args: argparse.Namespace) -> int:
    expires = time.time() + args.expires_in_days * DAY_S if args.expires_in_days else None
    secret, key = create_key(
        _store(),
        args.name,
        expires_at=expires,
        rate_limit_rps=args.rps,
        rate_limit_burst=args.burst,
        max_active_jobs=args.max_jobs,
        max_stored_bytes=args.max_bytes,
    )
    print(f"created key {key.key_id} for {key.name!r} (expires {_when(expires)})", file=sys.stderr)
    print("the secret is shown once; give it to the caller and keep no copy:", file=sys.stderr)
    print(secret)
    return 0


def cmd_list(_: object, args: argparse.Namespace) -> int:
    now = time.time()
    for key in _store()(api_keys.every()):
        state = (key.refusal(now) and ("revoked" if key.revoked_at else "expired")) or "active"
        row = {
            "key_id": key.key_id,
            "name": key.name,
            "state": state,
            "created": _when(key.created_at),
            "expires": _when(key.expires_at),
            "limits": {
                k: v
                for k, v in {
                    "rps": key.rate_limit_rps,
                    "burst": key.rate_limit_burst,
                    "max_jobs": key.max_active_jobs,
                    "max_bytes": key.max_stored_bytes,
                }.items()
                if v is not None
            },
        }
        print(json.dumps(row))
    return 0


def cmd_revoke(_: object, args: argparse.Namespace) -> int:
    if not _store()(api_keys.revoke(args.key_id)):
        print(f"no key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


def add_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="API keys (on a host that reaches Redis)")
    sub = keys.add_subparsers(dest="keys", required=True)
    create = sub.add_parser("create", help="make a key and print its secret once")
    create.add_argument("--name", required=True, help="who the key is for (the shelter)")
    create.add_argument("--expires-in-days", type=float)
    create.add_argument("--rps", type=float, help="requests per second (default: settings)")
    create.add_argument("--burst", type=int, help="requests in one burst")
    create.add_argument("--max-jobs", type=int, help="jobs that have not ended, at once")
    create.add_argument("--max-bytes", type=int, help="bytes of uploads its jobs hold at once")
    create.set_defaults(run=cmd_create)
    sub.add_parser("list", help="every key, without its secret").set_defaults(run=cmd_list)
    revoke = sub.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=cmd_revoke)
