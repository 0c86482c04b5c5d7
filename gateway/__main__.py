"""`python -m gateway [--host H] [--port P] [--no-access-log]`: serve the gateway.

The one way the gateway is started (compose, the image, `make up`, the tests), so that each
runs uvicorn with the gateway's HTTP protocol (`gateway/http_protocol.py`). uvicorn reads
FORWARDED_ALLOW_IPS from the environment, as its own command does.
"""

import argparse

import uvicorn

from gateway.http_protocol import GatewayHTTPProtocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-access-log", action="store_true", help="no line per request")
    args = parser.parse_args(argv)
    uvicorn.run(
        "gateway.main:app",
        host=args.host,
        port=args.port,
        http=GatewayHTTPProtocol,
        access_log=not args.no_access_log,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
