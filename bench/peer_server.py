"""The peer-style server the harness compares catdog with: how the public projects of this
assignment serve. The same model and the same decode and preprocessing as catdog's worker,
run inside an `async def` FastAPI handler, one image per request, with no queue: the forward
pass blocks the event loop, so requests are answered strictly one after another.

    python bench/peer_server.py --port 8100 --threads 2
"""

import argparse
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, UploadFile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ceiling import load_engine

from common.imaging import decode_image


def build_app(threads: int) -> FastAPI:
    engine = load_engine(threads)
    app = FastAPI(title="peer-style server")

    @app.post("/predict")
    async def predict(file: UploadFile) -> dict[str, object]:
        image = decode_image(await file.read()).image
        found = engine.predict([image])[0]
        return {"label": found.label, "probability": found.probability}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run(build_app(args.threads), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
