"""The GPU target's verdict: 3,000 img/s is set for an H100 or H200; another card gets no verdict."""

import pytest

from core.bench.throughput import target_gpu


@pytest.mark.parametrize(
    ("name", "judged"),
    [
        ("NVIDIA H100 80GB HBM3", True),
        ("NVIDIA H200", True),
        ("NVIDIA A100-SXM4-80GB", False),
        ("NVIDIA GeForce RTX 4090", False),
        ("", False),
    ],
)
def test_the_target_is_judged_on_the_cards_it_is_set_for(name, judged):
    assert target_gpu(name) is judged
