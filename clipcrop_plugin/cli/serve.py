"""``clipcrop serve``: the local HTTP API and review page."""

from __future__ import annotations

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
    app = create_app(library, token=token, bind_host=host,
                     allowed_hosts=default_allowed_hosts(host, allow_hosts))
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"clipcrop review page: http://{shown}:{port}/" + (f"?token={token}" if token else ""), err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    finally:
        library.close()
