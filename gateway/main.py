"""The ASGI app; `python -m gateway` serves it (see `gateway/__main__.py`)."""

from gateway.app import create_app

app = create_app()
