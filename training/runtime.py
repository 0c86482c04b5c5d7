"""Device, thread and seed choices for training runs."""

import os
import random

import numpy as np
import torch


def use_all_cores() -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
