"""Many tasks from one frozen backbone: mixed-task batched inference (``multitask``), the
record forms of mixed-task input (``records``) and the HTTP server (``server``)."""
from .multitask import LoadedTask, MultiTaskPredictor
from .records import RecordError

__all__ = ["LoadedTask", "MultiTaskPredictor", "RecordError"]
