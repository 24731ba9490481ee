"""Models by name: backbones with a common stage/head interface, FRSKD's self-teacher and AI-KD's critic.

Importing this package imports every model file, which registers its factories.
"""

from . import bifpnc, critic, densenet, preact_resnet, resnet, small_cnn, wrn  # noqa: F401  (registration)
from .base import Backbone, global_average_pool
from .bifpnc import BiFPNc, MaxPool2dSamePadding, normalized_fusion_weights
from .critic import Critic
from .registry import build_model, create_model, list_models, register_model

__all__ = [
    "Backbone",
    "BiFPNc",
    "Critic",
    "build_model",
    "MaxPool2dSamePadding",
    "create_model",
    "global_average_pool",
    "list_models",
    "normalized_fusion_weights",
    "register_model",
]
