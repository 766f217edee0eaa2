"""Task families behind one interface (``base.Task``): what the data looks like, how it is read,
encoded for a backbone, scored and written. ``build_task(name, **options)`` makes one.

  classification  sst2 mnli rte boolq cb                       (classification.py)
  tagging         conll03 conll04 ontonotes tagging conll05 conll12   (tagging.py)
  qa              squad squad_v2                               (qa.py)
"""
from . import classification, qa, tagging  # noqa: F401  (each family registers its names)
from .base import TASKS, BadRows, Encoded, Task, build_task, load_splits
from .features import make_loader
from .readers import DataFormatError

__all__ = ["TASKS", "BadRows", "DataFormatError", "Encoded", "Task", "build_task",
           "load_splits", "make_loader"]
