"""The Celery configuration both sides build: JSON only, late acks, explicit routing."""

import pytest

from common.messaging import CHUNK_TASK, JOB_ENDED_TASK, PREDICT_TASK, celery_config, make_celery
from common.settings import Settings


def test_messages_are_json_only_so_a_pickle_is_refused() -> None:
    conf = celery_config(Settings())
    assert conf["task_serializer"] == "json"
    assert conf["accept_content"] == ["json"]
    assert conf["result_accept_content"] == ["json"]


def test_tasks_are_acknowledged_late_and_requeued_when_their_process_dies() -> None:
    conf = celery_config(Settings(visibility_timeout_s=200, worker_max_memory_per_child_kb=999))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    transport = conf["broker_transport_options"]
    assert transport["visibility_timeout"] == 200
    # Lost messages are swept back well within the visibility timeout.
    assert transport["unacked_restore_interval"] * transport["unacked_restore_throttle"] <= 30
    assert conf["worker_max_memory_per_child"] == 999


def test_every_task_has_a_soft_and_a_hard_time_limit_from_the_settings() -> None:
    conf = celery_config(Settings(task_soft_time_limit_s=30, task_time_limit_s=45))
    assert (conf["task_soft_time_limit"], conf["task_time_limit"]) == (30, 45)


@pytest.mark.parametrize(
    "limits",
    [
        {"task_soft_time_limit_s": 50, "task_time_limit_s": 40},
        {"task_soft_time_limit_s": 50, "task_time_limit_s": 60, "visibility_timeout_s": 60},
    ],
)
def test_time_limits_out_of_order_are_refused(limits: dict[str, float]) -> None:
    # A hard limit past the visibility timeout would let a slow task be delivered twice.
    with pytest.raises(ValueError, match="time limits must be ordered"):
        Settings(**limits)  # type: ignore[arg-type]


def test_model_loading_gets_more_than_celerys_four_seconds() -> None:
    assert celery_config(Settings(model_load_timeout_s=120))["worker_proc_alive_timeout"] == 120


def test_predictions_and_bulk_work_have_their_own_queues() -> None:
    routes = celery_config(Settings(realtime_queue="rt", bulk_queue="bk"))["task_routes"]
    assert routes[PREDICT_TASK] == {"queue": "rt"}
    assert routes[CHUNK_TASK] == routes[JOB_ENDED_TASK] == {"queue": "bk"}


def test_a_worker_started_without_dash_q_consumes_both_queues_named_by_the_settings() -> None:
    app = make_celery(Settings(realtime_queue="rt", bulk_queue="bk"), "test")
    assert sorted(app.amqp.queues.consume_from) == ["bk", "rt"]
