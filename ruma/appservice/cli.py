"""``ruma appservice list|validate``: the operator's view of application services.

- ``ruma appservice validate FILE...`` checks registration files (each alone and together)
  and prints every problem as ``file: field: what is wrong``; exit status 1 if any.
- ``ruma appservice list -c homeserver.yaml`` lists the registered appservices with their
  namespaces and, from the database, their delivery state (queued items, failures).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TextIO

from ruma.appservice.registration import (
    Namespace,
    load_registration,
    load_registrations,
    validate_together,
)
from ruma.config import ConfigError, load_config
from ruma.storage.appservice import AppserviceStore
from ruma.storage.database import Database

__all__ = ["add_appservice_parser", "run_appservice_command"]


def add_appservice_parser(sub: Any, default_config: str) -> None:
    """Add ``appservice list|validate`` to the ``ruma`` command's subparsers."""
    parser = sub.add_parser(
        "appservice",
        help="list or validate application-service registrations",
        description="List or validate application-service registration files.",
    )
    actions = parser.add_subparsers(dest="appservice_command", metavar="ACTION")
    listing = actions.add_parser("list", help="list the registered appservices and their state")
    listing.add_argument("-c", "--config", default=default_config, help="path to homeserver.yaml")
    validate = actions.add_parser("validate", help="check registration files")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument(
        "--server-name", default=None,
        help="server name for the sender user (default: from -c, else 'localhost')",
    )
    validate.add_argument("-c", "--config", default=None, help="path to homeserver.yaml")


def run_appservice_command(
    args: argparse.Namespace,
    out: TextIO,
    open_database: Callable[[Any], Database],
    wait: Callable[[Any], Any],
) -> int:
    """Run the subcommand; ``open_database``/``wait`` come from ``ruma.cli``."""
    if args.appservice_command == "validate":
        return _validate(args, out)
    if args.appservice_command == "list":
        return _list(args, out, open_database, wait)
    out.write("usage: ruma appservice {list,validate} ...\n")
    return 2


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    server_name = args.server_name
    if server_name is None and args.config:
        server_name = load_config(args.config).server_name
    server_name = server_name or "localhost"
    regs = []
    failed = False
    for path in args.files:
        try:
            regs.append(load_registration(path, server_name))
        except ConfigError as e:
            out.write(f"{e}\n")
            failed = True
    if not failed:
        try:
            validate_together(regs)
        except ConfigError as e:
            out.write(f"{e}\n")
            failed = True
    if failed:
        return 1
    for reg in regs:
        out.write(f"{os.path.basename(reg.source)}: OK (appservice {reg.id!r}, sender {reg.sender})\n")
    return 0


def _ns(namespaces: tuple[Namespace, ...]) -> str:
    return ", ".join(f"{n.regex}{' (exclusive)' if n.exclusive else ''}" for n in namespaces) or "-"


def _list(
    args: argparse.Namespace,
    out: TextIO,
    open_database: Callable[[Any], Database],
    wait: Callable[[Any], Any],
) -> int:
    config = load_config(args.config)
    regs = load_registrations(config.app_service_config_files, config.server_name)
    if not regs:
        out.write("No application services registered (app_service_config_files is empty).\n")
        return 0
    db = open_database(config)
    try:
        wait(db.prepare())
        store = AppserviceStore(db)
        states = {s.as_id: s for s in wait(store.get_all_states())}
        backlog = wait(store.get_backlog())
    finally:
        db.close()
    for reg in regs:
        state = states.get(reg.id)
        out.write(f"{reg.id}  ({reg.source})\n")
        out.write(f"  url: {reg.url or '(none: receives no transactions)'}\n")
        out.write(f"  sender: {reg.sender}   rate_limited: {str(reg.rate_limited).lower()}\n")
        out.write(f"  users: {_ns(reg.users)}\n  aliases: {_ns(reg.aliases)}\n")
        out.write(f"  rooms: {_ns(reg.rooms)}\n")
        if reg.protocols:
            out.write(f"  protocols: {', '.join(reg.protocols)}\n")
        if state is None:
            out.write("  delivery: not started yet\n")
        else:
            status = "up" if state.failures == 0 else f"down ({state.failures} failed attempts)"
            out.write(
                f"  delivery: {status}, {backlog.get(reg.id, 0)} queued,"
                f" last transaction {state.last_txn_id}, delivered up to {state.acked_position}\n"
            )
    return 0
