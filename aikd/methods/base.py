"""The interface every method implements; the trainer calls nothing else (ARCHITECTURE.md)."""

from __future__ import annotations

import torch

_METHODS: dict[str, type] = {}


def register_method(*names: str):
    """Register a Method class under one or more `method.name` values (AI-KD's presets share one class)."""
    def deco(cls):
        for n in names:
            _METHODS[n] = cls
        return cls
    return deco


def method_class(name: str) -> type:
    """The class registered as `name` (what it needs of the data, e.g. `pair_batches`, is known before any)."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def create_method(cfg, model, data, device, teacher=None) -> Method:
    return method_class(cfg.method.name)(cfg, model, data.num_classes, data, device, teacher=teacher)


def list_methods() -> list[str]:
    return sorted(_METHODS)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients, in no optimizer (SPEC 1.7)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Method:
    name = "base"
    pair_batches = False   # CS-KD: the train loader yields anchors + partners
    needs_teacher = False  # a frozen phase-1 model S_sup is passed as `teacher`

    def __init__(self, cfg, model, num_classes, data, device, teacher=None):
        self.cfg, self.model, self.num_classes, self.data, self.device = cfg, model, num_classes, data, device
        self.teacher = teacher
        self.epoch = 0

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def training_step(self, batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def extra_parameters(self) -> list:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
