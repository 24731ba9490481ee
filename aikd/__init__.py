"""aikd: a pure-PyTorch training library for self-knowledge distillation (AI-KD, FRSKD, CS-KD, TF-KD, PS-KD).

It never imports ray, optuna or mlflow: the search system (trainables/, spaces/, search/) wraps it.
"""

__version__ = "0.1.0"
