"""Stream weights: import from PyTorch state_dicts and the Orbax checkpoints used as `init_from`."""

from amfi_jax.weights.common import WeightImportError, stream_state
from amfi_jax.weights.stream_checkpoint import load_stream, require_stream_checkpoint, save_stream
from amfi_jax.weights.torch_import import SOURCES, build_stream_for, import_state_dict, read_tensors

__all__ = ["SOURCES", "WeightImportError", "build_stream_for", "import_state_dict", "load_stream",
           "read_tensors", "require_stream_checkpoint", "save_stream", "stream_state"]
