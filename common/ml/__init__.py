"""The torch side of `common/`: model definitions, the preprocessing training and serving
share, checkpoints and model loading. Training and the worker's pool processes import it; the
gateway, the client and the rest of `common/` never do (tests/unit/test_layering.py)."""
