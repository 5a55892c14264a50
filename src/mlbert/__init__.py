"""mlbert: multi-label text classification by fine-tuning BERT-family encoders."""

from . import threads

threads.prepare()  # before torch is imported below: it reads the thread settings once, at start

from typing import TYPE_CHECKING  # noqa: E402

from .config import TrainConfig  # noqa: E402
from .errors import ConfigError, DataError, MlbertError, NotFittedError  # noqa: E402
from .version import __version__  # noqa: E402

if TYPE_CHECKING:
    from .classifier import MultiLabelClassifier
    from .data import read_dataset


def __getattr__(name: str):
    """The classifier and the reader on first use: they pull in torch, transformers and scikit-learn (about
    2 s), which `mlbert --help` and `import mlbert.config` do not need."""
    if name == "MultiLabelClassifier":
        from .classifier import MultiLabelClassifier

        return MultiLabelClassifier
    if name == "read_dataset":
        from .data import read_dataset

        return read_dataset
    raise AttributeError(f"module 'mlbert' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataError",
    "MlbertError",
    "MultiLabelClassifier",
    "NotFittedError",
    "TrainConfig",
    "__version__",
    "read_dataset",
]
