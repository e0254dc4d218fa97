"""``clipcrop serve``: the local HTTP API and review page."""

from __future__ import annotations

import errno
import socket

import click

from ..errors import ClipcropError, ConfigError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--token", envvar="CLIPCROP_TOKEN", default=None,
              help="Require this token (Authorization: Bearer T, or open /?token=T once). Env: CLIPCROP_TOKEN.")
@click.option("--db", "db_url", default=None, help="SQLAlchemy URL of the crop database (default: configured).")
@click.option("--allow-host", "allow_hosts", multiple=True,
              help="Extra Host header name to accept (e.g. the machine's DNS name). Repeatable.")
def serve(host: str, port: int, token: str | None, db_url: str | None, allow_hosts: tuple[str, ...]) -> None:
    """Serve the JSON API (OpenAPI at /openapi.json) and the review page.

    \b
    Example:
      clipcrop serve                  # then open http://127.0.0.1:8765/
      clipcrop serve --host 0.0.0.0 --token "$(openssl rand -hex 16)" --allow-host nas.local
    """
    from ..extras import MissingExtraError, require_extra

    try:
        require_extra("serve", "clipcrop serve")
    except MissingExtraError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    import uvicorn

    from ..api import Library
    from ..server import create_app
    from ..server.security import check_bind, default_allowed_hosts
    from .db import check_db_location

    try:
        check_bind(host, token)
        check_db_location(db_url, create=False)
        library = Library.open(db_url)
    except ClipcropError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
    # Bind before saying where to go: a busy port is one error line, never a URL that leads nowhere.
    try:
        sock = listen_socket(host, port)
    except OSError as exc:
        library.close()
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}"
                   + (" (another server is using it; pick another --port)" if exc.errno == errno.EADDRINUSE else ""),
                   err=True)
        raise SystemExit(1) from None
    app = create_app(library, token=token, bind_host=host,
                     allowed_hosts=default_allowed_hosts(host, allow_hosts))
    shown = f"[{host}]" if ":" in host else host
    bound_port = sock.getsockname()[1]
    click.echo(f"clipcrop review page: http://{shown}:{bound_port}/" + (f"?token={token}" if token else ""), err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a clean stop, exit 0
        pass
    finally:
        sock.close()
        library.close()


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free one); raises ``OSError`` when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only skips TIME_WAIT after a restart; a port another server holds still fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
