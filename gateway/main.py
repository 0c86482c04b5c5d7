"""The ASGI entry point: `uvicorn gateway.main:app --host 127.0.0.1 --port 8000`."""

from gateway.app import create_app

app = create_app()
