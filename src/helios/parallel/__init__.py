"""Running one model over several processes (context parallelism of the transformer)."""

from ..model.context_parallel import ContextParallel, disable_context_parallel, enable_context_parallel

__all__ = ["ContextParallel", "enable_context_parallel", "disable_context_parallel"]
