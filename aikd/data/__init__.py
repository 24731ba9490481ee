"""Datasets, splits, samplers and device-resident loaders."""

from aikd.data.datasets import DATASETS, DatasetNotFoundError, get_dataset
from aikd.data.loaders import Batch, Data, build_data
from aikd.data.samplers import PairBatchSampler
from aikd.data.split import stratified_holdout

__all__ = ["DATASETS", "Batch", "Data", "DatasetNotFoundError", "PairBatchSampler", "build_data", "get_dataset",
           "stratified_holdout"]
