"""The one runtime settings object. Every field can be set with a `CATDOG_` environment
variable (for example `CATDOG_REDIS_URL`) or a `.env` file.

Hyperparameters are not here: they live in `params.yaml` so DVC can track them.
"""

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.imaging import ImageLimits

MB = 1024 * 1024
# The development defaults, and the word every placeholder in .env.example carries.
DEV_SECRETS = frozenset({"dev-callback-secret", "admin:admin"})
PLACEHOLDER = "change-me"
# Fields that hold secrets (the Redis URL carries the Redis password).
SECRET_FIELDS = frozenset({"callback_secret", "flower_basic_auth", "redis_url"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATDOG_", env_file=".env", extra="ignore")

    environment: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    log_json: bool = True

    # Redis is both the Celery broker/result store and the job/result store.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connections the gateway may hold at once; each waiting /predict holds one.
    redis_max_connections: int = Field(default=512, gt=0)
    # A Redis that has not answered a gateway command (or task publish) within this is
    # unavailable: the request gets 503 `broker_unavailable` instead of hanging with it.
    redis_timeout_s: float = Field(default=1.0, gt=0)

    # Model: an MLflow registry URI (models:/NAME@ALIAS) or a path to a checkpoint file.
    model_uri: str = "models:/catdog@champion"
    mlflow_tracking_uri: str = "sqlite:///mlflow.db"
    registered_model_name: str = "catdog"
    champion_alias: str = "champion"

    # Queues: realtime answers /predict, bulk runs job chunks. Routing lives in worker/.
    realtime_queue: str = "realtime"
    bulk_queue: str = "bulk"

    # Image validation, shared by training-time validation and serving.
    max_image_bytes: int = Field(default=ImageLimits.max_bytes, gt=0)
    max_image_pixels: int = Field(default=ImageLimits.max_pixels, gt=0)
    min_image_side: int = Field(default=ImageLimits.min_side, gt=0)
    # Decoded size of one image in its real bytes a pixel, and what one process's decodes
    # may hold at once (common.imaging).
    max_image_decoded_bytes: int = Field(default=ImageLimits.max_decoded_bytes, gt=0)
    image_decode_budget_bytes: int = Field(default=ImageLimits.decode_budget_bytes, gt=0)

    # Synchronous prediction.
    predict_timeout_s: float = Field(default=10.0, gt=0)

    # Bulk jobs.
    max_job_files: int = Field(default=1000, gt=0)
    max_job_bytes: int = Field(default=500 * MB, gt=0)
    job_ttl_s: int = Field(default=24 * 3600, gt=0)
    # How long after expiry a job id still answers 410 Gone instead of 404.
    job_tombstone_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    max_queue_depth: int = Field(default=10_000, gt=0)
    # The share of Redis's maxmemory uploads never use: an upload that would eat into it is
    # refused (507) before it is stored. At maxmemory Redis refuses every MULTI, so kombu
    # could not acknowledge a message and Celery would stop the worker; this keeps room for
    # the workers' results and acknowledgements.
    redis_memory_reserve: float = Field(default=0.1, ge=0, lt=1)
    # How long an Idempotency-Key stays reserved while its upload is still being received: a
    # gateway that dies mid-upload leaves a reservation that lapses after this.
    idempotency_pending_ttl_s: int = Field(default=60, gt=0)
    chunk_size: int = Field(default=16, gt=0)
    callback_secret: SecretStr = SecretStr("dev-callback-secret")
    callback_max_attempts: int = Field(default=5, gt=0)

    # Worker runtime. Bulk: images per forward pass (a job's chunks hold `chunk_size`); 4 ran
    # fastest on a 2-core CPU, where 32 ran at less than half its speed (bench/README.md).
    batch_size: int = Field(default=4, gt=0)
    # Chunk messages a bulk worker holds per pool process, the one it runs included
    # (Celery's prefetch multiplier, for workers of the bulk queue alone). 2: a process's
    # next chunk waits in its host instead of being fetched from Redis once the last one
    # is acknowledged (a quarter less idle between chunks, bench/README.md); the price, with
    # several bulk hosts, is that a job's last chunks may wait on a busy host while another
    # is idle. A waiting chunk is marked held by its host, so the sweeper re-drives it at
    # once if the host dies (worker.sweeper, rule 1).
    bulk_prefetch_multiplier: int = Field(default=2, gt=0)
    # Realtime micro-batching (worker.batcher): the /predict requests a threaded realtime
    # worker holds at once share one forward pass of at most `max_batch_size` images
    # (4: the best batch on a 2-core CPU, bench/README.md),
    # gathered for at most `max_wait_ms` after the first arrived (0: never wait; take what
    # is queued while the previous pass ran).
    max_batch_size: int = Field(default=4, gt=0)
    max_wait_ms: float = Field(default=0.0, ge=0)
    # Added to a worker's nice value at start: a bulk worker at 10 leaves the CPU to the
    # realtime worker beside it whenever /predict has work.
    worker_nice: int = Field(default=0, ge=0, le=19)
    # The pet probability below which an answer says `pet_detected: false` ("not a cat or
    # dog"); unset, the threshold the checkpoint was trained with (common.ml.open_set).
    pet_threshold: float | None = Field(default=None, ge=0, le=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # What runs the forward pass: PyTorch, or ONNX Runtime on the same model exported at
    # load (worker.onnx_forward; CPU only; 2-5 x faster on this project's 2-core CPU, the
    # same answers, checked at every load). auto: ONNX Runtime on a CPU, PyTorch on a GPU.
    inference_runtime: Literal["auto", "torch", "onnxruntime"] = "auto"
    # The forward pass's precision (torch runtime). auto: float16 mixed precision on a GPU
    # (torch.autocast: convolutions in half precision, the answers in float32), float32 on
    # a CPU. bfloat16 also runs on a CPU under autocast; ONNX Runtime runs float32 only.
    precision: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # Torch threads per model-owning worker process on CPU; 0: the cores divided among them.
    worker_threads: int = Field(default=0, ge=0)
    max_deliveries: int = Field(default=3, gt=0)
    worker_max_memory_per_child_kb: int = Field(default=2_000_000, gt=0)
    visibility_timeout_s: int = Field(default=3600, gt=0)
    # Every task is told to stop after the soft limit (a chunk fails the items it was on with
    # reason `timeout` and hands the rest on) and is killed after the hard one, so a hung
    # decode or forward pass never holds a process for good. Both stay below the visibility
    # timeout, so a running task is never delivered a second time for being slow.
    task_soft_time_limit_s: float = Field(default=120.0, gt=0)
    task_time_limit_s: float = Field(default=150.0, gt=0)
    # The sweeper (worker.sweeper; one bulk worker at a time runs it) looks at every job
    # this often. It re-drives a chunk whose worker process's heartbeat has gone at once,
    # and a job with no progress for `stall_timeout_s` while nothing waits in the bulk
    # queue (a lost message, a task that raised); after `max_redrives` such re-drives the
    # job's unfinished items fail with reason `stalled`. A job that ended but whose end
    # report (callback) has not run for as long is reported again.
    sweep_interval_s: float = Field(default=5.0, gt=0)
    stall_timeout_s: float = Field(default=120.0, gt=0)
    max_redrives: int = Field(default=3, ge=0)
    # A worker process announces itself ready only once its model is loaded and warm, so
    # Celery's 4 s limit on starting a child process is raised to this.
    model_load_timeout_s: float = Field(default=300.0, gt=0)
    # A process whose model failed to load tries again after this, doubling up to a minute
    # (a worker started before any champion existed serves once one is registered).
    model_load_retry_s: float = Field(default=5.0, gt=0)
    # Workers write a heartbeat (queues, model, version) this often; readiness reads it.
    heartbeat_interval_s: float = Field(default=2.0, gt=0)

    # Flower basic auth ("user:password"). Also read from FLOWER_BASIC_AUTH, Flower's own
    # variable, which is how the stack hands it to Flower: the validator below then refuses
    # a placeholder there too.
    flower_basic_auth: SecretStr = Field(
        default=SecretStr("admin:admin"),
        validation_alias=AliasChoices("catdog_flower_basic_auth", "flower_basic_auth"),
    )

    # API keys (`catdog keys`). "off" serves anyone, as one anonymous caller; a production
    # gateway refuses to start with auth on and no key.
    auth: Literal["on", "off"] = "on"
    # What one key may do, unless the key carries limits of its own: requests per second with
    # bursts (a token bucket shared by every gateway), jobs not yet ended, and bytes of
    # uploaded photos held for its jobs at once.
    rate_limit_rps: float = Field(default=20.0, gt=0)
    rate_limit_burst: int = Field(default=40, gt=0)
    max_active_jobs_per_key: int = Field(default=10, gt=0)
    max_stored_bytes_per_key: int = Field(default=1024 * MB, gt=0)

    # Callbacks may only reach public addresses; these hosts are allowed anyway (an internal
    # receiver by name), and these are refused whatever they resolve to (the compose
    # services: a callback must never reach MLflow, Redis or Grafana from inside).
    callback_allowed_hosts: list[str] = []
    callback_refused_hosts: list[str] = [
        "localhost",
        "redis",
        "gateway",
        "worker",
        "worker-realtime",
        "worker-gpu",
        "flower",
        "mlflow",
        "prometheus",
        "grafana",
        "proxy",
        "evaluate",
    ]

    # Monitoring. Worker children's metrics are merged by one exporter in the worker's main
    # process (prometheus_client multiprocess mode); -1 turns the exporter off.
    worker_metrics_port: int = Field(default=9100, ge=-1, le=65535)
    # Live quality: sliding windows over the last N feedback outcomes / predictions.
    quality_window: int = Field(default=500, gt=0)
    quality_record_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    quality_reference_ttl_s: float = Field(default=600.0, gt=0)
    quality_max_models: int = Field(default=5, gt=0)

    @model_validator(mode="after")
    def _limits_in_order(self) -> "Settings":
        if not self.task_soft_time_limit_s < self.task_time_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "task time limits must be ordered: task_soft_time_limit_s <"
                " task_time_limit_s < visibility_timeout_s"
            )
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_prod(self) -> "Settings":
        # Fail fast: a production deployment with a default or placeholder secret is worse
        # than none. Placeholders are what .env.example ships: they all say "change-me".
        # Each service receives only the secrets it uses, so only those given are checked
        # here; a process that uses one it was not given calls require_secrets at start.
        if self.environment == "prod":
            for name in sorted(SECRET_FIELDS & self.model_fields_set):
                self._refuse_if_not_real(name)
        return self

    def require_secrets(self, *names: str) -> None:
        """In production, refuse to go on unless each named secret was given a real value."""
        if self.environment != "prod":
            return
        for name in names:
            if name not in self.model_fields_set:
                raise ValueError(f"CATDOG_{name.upper()} must be set in production")
            self._refuse_if_not_real(name)

    def _refuse_if_not_real(self, name: str) -> None:
        value = getattr(self, name)
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if text in DEV_SECRETS or PLACEHOLDER in text.lower():
            raise ValueError(f"CATDOG_{name.upper()} must be set to a real secret in production")


@lru_cache
def get_settings() -> Settings:
    """Settings read once per process; tests call `get_settings.cache_clear()`."""
    return Settings()
