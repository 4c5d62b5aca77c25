"""`tfcli serve`: a trained model behind HTTP (LibreTranslate's API and a native one)."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Optional

import typer

from tfcli.cli import options
from tfcli.cli.app import app, err, resolve_run, run, setup_logging
from tfcli.errors import TfcliError

EXTRA = "tfcli serve needs the serve extra: pip install 'tfcli[serve]'"


@app.command()
def serve(
    model: options.Model = None,
    host: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Address to listen on; 0.0.0.0: every interface \\[default: 127.0.0.1]."),
    ] = None,
    port: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="TCP port; 0: any free one \\[default: 8000]."),
    ] = None,
    max_chars: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-chars", help="Most characters in one request \\[default: 100000]."),
    ] = None,
    max_lines: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-lines", help="Most texts in one request \\[default: 1000]."),
    ] = None,
    api_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--api-key", envvar="TFCLI_API_KEY", help="Key every request must carry."),
    ] = None,
    batch_wait_ms: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            "--batch-wait-ms",
            help="How long an idle worker waits for more requests \\[default: 5].",
        ),
    ] = None,
    batch_requests: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--batch-requests",
            help="Most requests translated together; 1: one at a time \\[default: 256].",
        ),
    ] = None,
    beam: options.Beam = None,
    batch_tokens: options.BatchTokens = None,
    device: options.Device = None,
    precision: options.Precision = None,
    quiet: options.Quiet = False,
) -> None:
    """Serve a model over HTTP: POST /translate (LibreTranslate's API), POST /v1/translate,
    GET /health, GET /info. Concurrent requests are translated in batches.

    [bold]Example:[/]
      tfcli serve -m runs/quickstart --port 8000
      curl -s localhost:8000/translate -H 'Content-Type: application/json' -d '{"q": "Guten Morgen.", "source": "de", "target": "en"}'
    """
    setup_logging(not quiet)
    given = dict(host=host, port=port, max_chars=max_chars, max_lines=max_lines)
    given |= dict(api_key=api_key, batch_wait_ms=batch_wait_ms, batch_requests=batch_requests)
    decode = dict(beam=beam, batch_tokens=batch_tokens, device=device, precision=precision)
    run(
        lambda: start_server(
            model, {k: v for k, v in given.items() if v is not None}, decode, quiet
        )
    )


def start_server(model, given: dict, decode: dict, quiet: bool) -> None:
    """Load the model once, listen, and serve until interrupted."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise TfcliError(EXTRA) from None
    from tfcli.config import ServeConfig
    from tfcli.model.kernels import on_own_thread
    from tfcli.run_info import describe
    from tfcli.serving.app import create_app
    from tfcli.translation.translator import load_translator

    settings = ServeConfig(**given)
    path = resolve_run(model)
    # no OpenMP pool outlives the loading: the worker thread that decodes is left the only one
    translator, facts = on_own_thread(lambda: (load_translator(path, **decode), describe(path)))
    sock = listen(settings.host, settings.port)
    app_ = create_app(translator, settings, facts)
    address = sock.getsockname()
    err.print(
        f"serving {path} on http://{settings.host}:{address[1]} (Ctrl+C to stop)", highlight=False
    )
    config = uvicorn.Config(app_, log_level="warning" if quiet else "info", access_log=not quiet)
    uvicorn.Server(config).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise TfcliError(f"cannot listen on {host}:{port} ({reason})") from None
