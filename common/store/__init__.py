"""The Redis store shared by the gateway (asyncio) and the workers (blocking), split by concern:

- `ops`: the `Op` of one exchange and the two faces that run it (`Store`, `AsyncStore`);
- `keys`: every key name, and the layout in one table;
- `jobs`: jobs, their items' images and results, and the Lua scripts that keep them exact;
- `predict_mailbox`: the hand-off of one /predict upload and its reply;
- `workers`: the heartbeat registry of model-owning worker processes, and readiness;
- `model_generation`: the counter that asks every worker process to reload its model;
- `idempotency`: Idempotency-Key reservations;
- `queues`: how deep the broker's queues are.

Torch-free.
"""
