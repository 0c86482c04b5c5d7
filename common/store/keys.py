"""Every Redis key the service writes, named in one place.

Every key starts with `catdog:`; `{id}` is a job id, `{pid}` a prediction id:

    catdog:job:{id}              hash    status, total, done, failed, timestamps, callback
    catdog:job:{id}:names        list    file name of each item, by index
    catdog:job:{id}:results      hash    index -> ItemResult (JSON); written once per index
    catdog:job:{id}:attempts     hash    index -> times a worker started on the item
    catdog:job:{id}:deliveries   hash    chunk -> times the chunk was delivered
    catdog:job:{id}:plan         hash    chunk -> its item indices (JSON), as first published
    catdog:job:{id}:holders      hash    chunk -> the worker process running it now
    catdog:job:{id}:img:{index}  string  the uploaded bytes, deleted once the item has a result
    catdog:job-tomb:{id}         string  outlives the job by `job_tombstone_ttl_s`: 410, not 404
    catdog:idem:{kid}:{sha256}   string  an API key's Idempotency-Key -> job id (briefly while uploading, then for the job's life)
    catdog:predict:{pid}:img     string  the /predict upload, for one task
    catdog:predict:{pid}:reply   list    the worker's one PredictReply; the gateway BLPOPs it
    catdog:jobs:watched          zset    job id -> when the sweeper expects news of it (Redis clock)
    catdog:sweeper               string  the worker process that sweeps now (a lease)
    catdog:workers               zset    worker process id -> heartbeat expiry (Redis clock)
    catdog:worker:{wid}          string  Heartbeat (JSON): queues, state, model, generation
    catdog:model:generation      string  bumped by `python -m worker.reload`
    catdog:apikey:{digest}       hash    an API key's record (common.store.api_keys)
    catdog:apikey-ids            hash    key id -> digest
    catdog:owner:{kid}:jobs      set     the key's jobs that have not ended
    catdog:owner:{kid}:bytes     hash    job id -> bytes of upload it holds
    catdog:owner:{kid}:bucket    hash    the key's request token bucket

Live-quality keys (`catdog:quality:*`) are laid out in `common.quality`. Kombu keeps each
queue's waiting messages in a list named after the queue.
"""

import hashlib

PREFIX = "catdog"

WORKERS = f"{PREFIX}:workers"
WATCHED_JOBS = f"{PREFIX}:jobs:watched"
SWEEPER = f"{PREFIX}:sweeper"
WORKER_PREFIX = f"{PREFIX}:worker:"
MODEL_GENERATION = f"{PREFIX}:model:generation"
API_KEY_PREFIX = f"{PREFIX}:apikey:"
API_KEY_IDS = f"{PREFIX}:apikey-ids"
OWNER_PREFIX = f"{PREFIX}:owner:"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def names(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:names"


def results(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:results"


def attempts(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:attempts"


def deliveries(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:deliveries"


def plan(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:plan"


def holders(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:holders"


def image(job_id: str, index: int) -> str:
    return f"{PREFIX}:job:{job_id}:img:{index}"


def tombstone(job_id: str) -> str:
    return f"{PREFIX}:job-tomb:{job_id}"


def idempotency(owner: str, key: str) -> str:
    # Scoped by API key: two callers' keys never meet. Hashed: the client's key is
    # arbitrary text and may be long.
    return f"{PREFIX}:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"


def predict_image(pid: str) -> str:
    return f"{PREFIX}:predict:{pid}:img"


def predict_reply(pid: str) -> str:
    return f"{PREFIX}:predict:{pid}:reply"


def worker(worker_id: str) -> str:
    return f"{WORKER_PREFIX}{worker_id}"


def api_key(digest: str) -> str:
    return f"{API_KEY_PREFIX}{digest}"


def owner_jobs(owner: str) -> str:
    return f"{OWNER_PREFIX}{owner}:jobs"


def owner_bytes(owner: str) -> str:
    return f"{OWNER_PREFIX}{owner}:bytes"
