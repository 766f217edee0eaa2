"""Tasks: what the data looks like, how it is read, and how it is scored."""
from .classification import (TASKS, ClassificationTask, Example, get_task, load_splits,
                             read_task_file)
from .readers import DataFormatError
from .features import encode_examples, make_loader

__all__ = ["TASKS", "ClassificationTask", "DataFormatError", "Example", "encode_examples",
           "get_task", "load_splits", "make_loader", "read_task_file"]
