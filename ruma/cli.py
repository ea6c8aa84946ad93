"""The ``ruma`` admin command: ``generate-config`` and ``register-user``.

``twistd ruma`` runs the server; this command prepares and administers it. ``register-user``
writes straight to the database through the accounts store, so it works without the server
running, and also while it runs (SQLite is in WAL mode and waits for the writer's lock).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import yaml
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from ruma.accounts import AccountService, PasswordHasher, run_inline
from ruma.appservice.cli import add_appservice_parser, run_appservice_command
from ruma.config import ConfigError, HomeserverConfig, generate_config, load_config, parse_config
from ruma.errors import MatrixError
from ruma.protocol.signing import generate_signing_key
from ruma.storage.accounts import AccountStore
from ruma.storage.database import Database, Engine, SchemaTooNew
from ruma.tap import (
    DEFAULT_CONFIG,
    DEFAULT_DATA_DIR,
    build_homeserver,
    ensure_signing_key,
    postgres_args,
    tls_context,
)


class CommandError(Exception):
    """Printed as ``ruma: <message>`` with exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruma",
        description="Administer a Ruma Matrix homeserver. Run the server with `twistd ruma`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = sub.add_parser(
        "generate-config",
        help="write a commented homeserver.yaml and a new signing key",
        description="Write a commented homeserver.yaml and create the server's signing key.",
    )
    gen.add_argument("--server-name", required=True, help="the domain in user IDs, e.g. example.org")
    gen.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"directory for the database, signing key and media (default ./{DEFAULT_DATA_DIR})",
    )
    gen.add_argument(
        "--output",
        "-o",
        default=DEFAULT_CONFIG,
        help=f"where to write the config, '-' for stdout (default ./{DEFAULT_CONFIG})",
    )
    gen.add_argument("--force", action="store_true", help="overwrite an existing config file")

    check = sub.add_parser(
        "check-config",
        help="validate homeserver.yaml without starting the server",
        description="Load and validate the configuration, its signing key and TLS files, "
        "and print what the server would do. Creates and changes nothing.",
    )
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="path to homeserver.yaml")

    reg = sub.add_parser(
        "register-user",
        help="create a user account in the database",
        description="Create a local user account directly in the homeserver's database.",
    )
    reg.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="path to homeserver.yaml")
    reg.add_argument("--user", "-u", required=True, help="localpart (alice) or full ID (@alice:server)")
    reg.add_argument("--password", "-p", help="password (prompted for if omitted)")
    reg.add_argument("--admin", action="store_true", help="make the user a server admin")
    add_appservice_parser(sub, DEFAULT_CONFIG)
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(out)
        return 0
    try:
        if args.command == "generate-config":
            generate(args, out)
        elif args.command == "register-user":
            register_user(args, out)
        elif args.command == "appservice":
            return run_appservice_command(args, out, open_inline_database, _wait)
        elif args.command == "check-config":
            check_config(args, out)
    except (CommandError, ConfigError) as e:
        sys.stderr.write(f"ruma: {e}\n")
        return 1
    return 0


def generate(args: argparse.Namespace, out: TextIO) -> None:
    data_dir = os.path.abspath(args.data_dir)
    text = generate_config(args.server_name, data_dir)
    # Validate what we are about to write, and create the signing key it points at.
    config = parse_config(yaml.safe_load(text), filename="generated config")
    os.makedirs(data_dir, exist_ok=True)
    existed = os.path.exists(config.signing_key_path)
    ensure_signing_key(config)
    if args.output == "-":
        out.write(text)
        return
    if os.path.exists(args.output) and not args.force:
        raise CommandError(f"{args.output} already exists (use --force to overwrite it)")
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    out.write(f"Wrote {args.output} for server name {args.server_name!r}.\n")
    if existed:
        out.write(f"Kept the existing signing key {config.signing_key_path}.\n")
    else:
        out.write(f"Created signing key {config.signing_key_path}.\n")
    out.write(f"Start the server with: twistd -n ruma -c {args.output}\n")


def check_config(args: argparse.Namespace, out: TextIO) -> None:
    config = load_config(args.config)
    if os.path.exists(config.signing_key_path):
        key = ensure_signing_key(config)
        key_line = f"{config.signing_key_path} ({key.key_id})"
    else:
        key_line = f"{config.signing_key_path} (will be created on first start)"
    if any(li.tls for li in config.listeners):
        tls_context(config)
    # Build the whole homeserver once, on a memory reactor and a throwaway in-memory
    # database, so the sections other parts parse while wiring (federation, application
    # service registrations...) are validated too.
    scratch = Database.inline(Engine.SQLITE, ":memory:")
    try:
        build_homeserver(
            config,
            reactor=MemoryReactorClock(),
            clock=MemoryReactorClock(),
            database=scratch,
            signing_key=generate_signing_key("check"),
        )
    finally:
        scratch.close()
    if config.database.is_sqlite:
        db_line = f"SQLite {config.database.args['database']}"
    else:
        args_ = config.database.args
        db_line = (
            f"PostgreSQL ({config.database.name}) "
            f"{args_.get('user', '')}@{args_.get('host', 'localhost')}/"
            f"{args_.get('database', args_.get('dbname', ''))}"
        )
    out.write(f"{args.config}: OK\n")
    out.write(f"  server name:  {config.server_name}\n")
    out.write(f"  signing key:  {key_line}\n")
    out.write(f"  database:     {db_line}\n")
    if not config.listeners:
        out.write("  listeners:    none (the server would refuse to start)\n")
    for li in config.listeners:
        scheme = "https" if li.tls else "http"
        out.write(
            f"  listener:     {scheme} port {li.port} on {', '.join(li.bind_addresses)}"
            f" for {', '.join(li.resources)}\n"
        )
    registration = "off"
    if config.enable_registration:
        registration = "with a token" if config.registration_requires_token else "open"
    out.write(f"  registration: {registration}\n")


def open_inline_database(config: HomeserverConfig) -> Database:
    """The configured database, with transactions run in this thread (no reactor needed)."""
    if config.database.is_sqlite:
        path = str(config.database.args["database"])
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return Database.inline(Engine.SQLITE, path)
    return Database.inline(Engine.POSTGRES, postgres_args(config))


def _wait(coro: Any) -> Any:
    """Run a coroutine over an inline database: it completes without a reactor."""
    d = Deferred.fromCoroutine(coro)
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        raise RuntimeError("operation did not complete synchronously")
    result = results[0]
    from twisted.python.failure import Failure

    if isinstance(result, Failure):
        result.raiseException()
    return result


def register_user(args: argparse.Namespace, out: TextIO) -> None:
    config = load_config(args.config)
    password = args.password
    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            raise CommandError("passwords do not match")
    db = open_inline_database(config)
    try:
        try:
            _wait(db.prepare())
        except SchemaTooNew as e:
            raise CommandError(str(e)) from None
        accounts = AccountService(
            AccountStore(db),
            _wall_clock(),
            PasswordHasher(config.bcrypt_rounds, run_inline),
            config.server_name,
        )
        localpart = args.user
        if localpart.startswith("@"):
            user_id = accounts.parse_local_user(localpart)
            localpart = user_id[1:].split(":", 1)[0]
        try:
            user_id = _wait(accounts.register(localpart.lower(), password, admin=args.admin))
        except MatrixError as e:
            raise CommandError(e.msg) from None
    finally:
        db.close()
    out.write(f"Registered {user_id}{' (admin)' if args.admin else ''}.\n")


def _wall_clock() -> Clock:
    """A clock reading the current time, for the accounts service outside a reactor."""
    clock = Clock()
    clock.advance(time.time())
    return clock


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
