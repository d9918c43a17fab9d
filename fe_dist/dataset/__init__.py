"""Data sources for `fe_dist.Pipeline` (``data={"train": ..., "eval": ...}``) and the data
sets that ship with fe_dist (never downloaded)."""

from fe_dist.dataset import mnist
from fe_dist.dataset.base import DataSource, LoadPlan
from fe_dist.dataset.csv_dataset import CSVDataset
from fe_dist.dataset.labeled_dir_dataset import LabeledDirDataset
from fe_dist.dataset.numpy_dataset import NumpyDataset
from fe_dist.dataset.tf_dataset import TFDataset
from fe_dist.dataset.tfrecord_dataset import TFRecordDataset

__all__ = ["CSVDataset", "DataSource", "LabeledDirDataset", "LoadPlan", "NumpyDataset",
           "TFDataset", "TFRecordDataset", "mnist"]
