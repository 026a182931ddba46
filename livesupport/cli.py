"""The ``livesupport`` command: ``serve``, ``demo``, ``db upgrade`` and ``agents``.

This is the only place that monkey-patches: ``serve`` and ``demo`` call
``gevent.monkey.patch_all()`` before anything imports werkzeug, SQLAlchemy or
the middleware, so this module imports nothing but the standard library at
the top. The other commands run unpatched.

Mistakes a user can make (a bad ``MODULE:APP``, a missing secret key, a bad
store URL, a duplicate email) end with one line on standard error and exit
status 2 (usage) or 1 (refused); tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import __version__

ROLES = ("all", "visitor", "agent")
AGENT_ROLES = ("agent", "supervisor")
MIN_PASSWORD_CHARS = 8
SERVE_OPTIONS = (
    ("--store", "URL", "sqlite:///PATH or postgresql://USER@HOST:PORT/DB, created or migrated "
     "on start (default: sqlite:///livesupport.db) [LIVESUPPORT_STORE]"),
    ("--bus", "URL", "local:// for one node; redis://HOST:PORT/N or postgresql://... for "
     "several (default: local://) [LIVESUPPORT_BUS]"),
    ("--secret-key", "KEY", "signs cookies and cursors: 32+ random bytes, the same on every "
     "node; prefer the variable, which ps does not show [LIVESUPPORT_SECRET_KEY]"),
    ("--node-id", "ID", "this node's name (default: HOST-PID) [LIVESUPPORT_NODE_ID]"),
)  # fmt: skip


class CommandError(Exception):
    """A user mistake or a refused request: printed as one line, then exit ``status``."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"LIVESUPPORT_{name}", default)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r} (or LIVESUPPORT_PORT)")
    return port


def _redact(url: str) -> str:
    """``url`` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


# -- serve and demo -------------------------------------------------------------


def _patch() -> None:
    """Monkey-patch for gevent (before werkzeug, SQLAlchemy or the app are imported)
    and send the library's log to stderr with timestamps, as a server should."""
    from gevent import monkey

    monkey.patch_all()
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Migrations say what they change at INFO; their plugin set-up is noise at start.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _middleware(app: Any, settings: dict[str, Any]) -> Any:
    """``LiveSupport(app, **settings)``, with configuration and store errors as
    :class:`CommandError`. Settings not given come from ``LIVESUPPORT_*``."""
    from .config import Config

    try:
        Config.from_env(**dict(settings))  # checks everything before opening anything
    except ValueError as exc:
        raise CommandError(str(exc)) from None

    from .middleware import LiveSupport
    from .store import StoreError

    try:
        return LiveSupport(app, **settings)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except ImportError as exc:
        raise CommandError(f"{exc} (is the store's or bus's driver installed?)") from None
    except StoreError as exc:
        raise CommandError(f"store unavailable: {exc}", status=1) from None


def _run_server(middleware: Any, host: str, port: int, **options: Any) -> int:
    from .server import serve

    try:
        serve(middleware, host, port, middleware=middleware, **options)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1) from None
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _patch()
    from .middleware import LiveSupport
    from .server import AppNotFound, load_app

    try:
        app = load_app(args.app)
    except AppNotFound as exc:
        raise CommandError(str(exc)) from None
    names = ("store", "bus", "secret_key", "node_id", "role")
    settings = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if isinstance(app, LiveSupport):  # wrapped in its module already: serve it as it is
        middleware = app
        ignored = [n for n, v in settings.items() if getattr(app.config, n) != v]
        if ignored:
            flags = ", ".join("--" + n.replace("_", "-") for n in ignored)
            print(f"livesupport: warning: {args.app} is wrapped already; ignoring {flags}")
    elif not (args.secret_key or _env("SECRET_KEY")):
        raise CommandError(
            "no secret key: set LIVESUPPORT_SECRET_KEY (or --secret-key) to at least 32 "
            "random bytes, the same on every node; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    else:
        middleware = _middleware(app, settings)
    config = middleware.config
    print(
        f"livesupport: node {config.node_id}, role {config.role}, "
        f"store {_redact(config.store)}, bus {_redact(config.bus)}",
        flush=True,
    )
    return _run_server(middleware, args.host, args.port)


def cmd_demo(args: argparse.Namespace) -> int:
    _patch()
    from . import demo

    state = demo.prepare(args.data)
    settings = {"store": state.store_url, "bus": "local://", "node_id": demo.NODE_ID}
    middleware = _middleware(demo.app, {**settings, "secret_key": state.secret_key, "role": "all"})
    demo.ensure_agent(middleware.store, state)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"livesupport: warning: anyone who reaches {args.host} can use the demo console")

    def on_ready(url: str) -> None:
        print(demo.banner(state, url, middleware.config.prefix), flush=True)

    return _run_server(middleware, args.host, args.port, on_ready=on_ready)


# -- db and agents ----------------------------------------------------------------


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Any]:
    """The migrated store named by ``--store``, released afterwards."""
    if not args.store:
        raise CommandError("no store: pass --store URL or set LIVESUPPORT_STORE")
    from .store import StoreError, open_store

    try:
        store = open_store(args.store)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except ImportError as exc:
        raise CommandError(f"{exc} (is the store's driver installed?)") from None
    except StoreError as exc:
        raise CommandError(f"store {_redact(args.store)}: {exc}", 1) from None
    try:
        yield store
    finally:
        store.dispose()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    with _store(args):  # open_store migrates
        print(f"livesupport: schema of {_redact(args.store)} is up to date")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("empty password refused (give it as the first line of stdin)")
    if len(password) < MIN_PASSWORD_CHARS:
        raise CommandError(f"password refused: use at least {MIN_PASSWORD_CHARS} characters")
    return password


def cmd_agents_add(args: argparse.Namespace) -> int:
    email, name = args.email.strip(), args.name.strip()
    local, at, domain = email.partition("@")
    if not (local and at and domain) or any(c.isspace() for c in email):
        raise CommandError(f"not an email address: {args.email!r}")
    if not name:
        raise CommandError("the agent's name must not be empty")
    password = _read_password()
    from .passwords import hash_password
    from .store import StoreConflict

    with _store(args) as store:
        try:
            agent = store.create_agent(email, name, args.role, hash_password(password))
        except StoreConflict:
            raise CommandError(f"an agent with email {email} already exists", 1) from None
    print(f"livesupport: added {agent.role} {agent.email} ({agent.name})")
    return 0


def cmd_agents_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        agents = store.list_agents()
    rows = [("EMAIL", "NAME", "ROLE", "STATE")]
    rows += [(a.email, a.name, a.role, "disabled" if a.disabled else "enabled") for a in agents]
    widths = [max(len(row[i]) for row in rows) for i in range(3)] + [0]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_agents_disable(args: argparse.Namespace) -> int:
    with _store(args) as store:
        agent = store.get_agent_by_email(args.email.strip())
        if agent is None:
            raise CommandError(f"no agent with email {args.email}", 1)
        store.update_agent(agent.id, disabled=True)
        store.delete_agent_sessions(agent.id)
    print(f"livesupport: disabled {agent.email} and ended its sessions")
    return 0


# -- parser -----------------------------------------------------------------------


def _add_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=_env("HOST", "127.0.0.1"),
        help="address to listen on (default: %(default)s) [LIVESUPPORT_HOST]",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=_env("PORT", "8000"),
        help="port to listen on (default: %(default)s) [LIVESUPPORT_PORT]",
    )


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=_env("STORE"),
        metavar="URL",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB [LIVESUPPORT_STORE]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livesupport", description="Live customer-support chat for WSGI sites."
    )
    parser.add_argument("--version", action="version", version=f"livesupport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve MODULE:APP wrapped in the middleware")
    _add_listen(serve)
    for option, metavar, text in SERVE_OPTIONS:
        serve.add_argument(option, metavar=metavar, help=text)
    serve.add_argument(
        "--role", choices=ROLES, help="routes this node serves (default: all) [LIVESUPPORT_ROLE]"
    )
    serve.add_argument("app", metavar="MODULE:APP", help="the host WSGI application")
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="serve a demo shop with chat on SQLite")
    _add_listen(demo)
    demo.add_argument(
        "--data",
        metavar="DIR",
        default=_env("DATA", "livesupport-demo"),
        help="keeps the database, secret key and agent password (default: ./%(default)s) "
        "[LIVESUPPORT_DATA]",
    )
    demo.set_defaults(func=cmd_demo)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND"
    )
    upgrade = db.add_parser("upgrade", help="create or migrate the schema")
    _add_store(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)

    agents = commands.add_parser("agents", help="agent accounts").add_subparsers(
        dest="agents_command", required=True, metavar="COMMAND"
    )
    add = agents.add_parser("add", help="add an agent; password is the first line of stdin")
    _add_store(add)
    add.add_argument("--email", required=True, help="the agent's sign-in, unique")
    add.add_argument("--name", required=True, help="shown to visitors")
    add.add_argument(
        "--role",
        choices=AGENT_ROLES,
        default="agent",
        help="supervisors may take over any conversation (default: %(default)s)",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from the first line of stdin (never from an argument)",
    )
    add.set_defaults(func=cmd_agents_add)
    listing = agents.add_parser("list", help="list agents")
    _add_store(listing)
    listing.set_defaults(func=cmd_agents_list)
    disable = agents.add_parser("disable", help="disable an agent and end its sessions")
    _add_store(disable)
    disable.add_argument("--email", required=True)
    disable.set_defaults(func=cmd_agents_disable)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except CommandError as exc:
        print(f"livesupport {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return status
