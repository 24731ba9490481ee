"""Model registry in the timm style: models are looked up by name so configs and search spaces can name them."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory `fn(num_classes, **kw) -> nn.Module` under `fn.__name__` and return it unchanged."""
    name = fn.__name__
    existing = _MODEL_FACTORIES.get(name)
    if existing is not None and (existing.__module__, existing.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(f"model name {name!r} is already registered by {existing.__module__}")
    _MODEL_FACTORIES[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODEL_FACTORIES)


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the registered model `name` for `num_classes` classes; extra keyword arguments go to its factory."""
    factory = _MODEL_FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return factory(num_classes=num_classes, **kwargs)


def build_model(cfg, num_classes: int) -> nn.Module:
    """The backbone a TrainConfig names (its stem where the architecture has two)."""
    kw = {"stem": cfg.model.stem} if cfg.model.name in ("resnet18", "densenet121") else {}
    return create_model(cfg.model.name, num_classes, **kw)
