"""Each machine's benchmark results keep files of their own: two 2-core VMs that both call
themselves "AMD EPYC" ran the model 2.4 times apart, so the label names the generation."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from reporting import machine_label


def test_two_generations_of_one_vendor_get_different_labels() -> None:
    first = {"cpu": "AMD EPYC Processor", "cores": 2, "cpu_id": "family 23 model 1 stepping 2"}
    later = {"cpu": "AMD EPYC Processor", "cores": 2, "cpu_id": "family 25 model 1 stepping 1"}
    assert machine_label(first) == "2core-amd-23-1"
    assert machine_label(later) == "2core-amd-25-1"


def test_the_vendor_is_a_plain_word_and_results_without_an_id_keep_the_old_label() -> None:
    described = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2}
    assert machine_label(described) == "2core-intel"
    assert machine_label({**described, "cpu_id": "family ? model ? stepping ?"}) == "2core-intel"
