"""FastEstimator 1.x's ``fe.dataset``."""

from fe_dist.dataset import CSVDataset, LabeledDirDataset, TFRecordDataset
from fe_dist.fe1.dataset import data
from fe_dist.fe1.dataset.data import mnist
from fe_dist.fe1.dataset.numpy_dataset import NumpyDataset

__all__ = ["CSVDataset", "LabeledDirDataset", "NumpyDataset", "TFRecordDataset", "data", "mnist"]
