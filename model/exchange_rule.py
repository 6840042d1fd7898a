"""When the gradient exchange gathers a dense layer's factors instead of
all-reducing its gradient (model/gradient_exchange.py explains the plans).

TF-free, so the scaling model (mnistctl/scaling.py, bench/scaling_model.py)
applies the very rule the trainer applies.
"""

from __future__ import annotations


def factors_worth_it(fan_in: int, fan_out: int, rows: int, replicas: int) -> bool:
    """Whether gathering factors moves at most half the bytes of all-reducing the gradient."""
    return replicas * rows * (fan_in + fan_out) <= fan_in * fan_out
