"""Embedding proteins with a pLM: settings (config), the compute loop (compute), what is left to do
(plan), the job (run) and its engines (local in this process, `engines.ray` on a cluster)."""
from protiso.embedding.compute import EmbedProgress, chunk_windows
from protiso.embedding.config import DTYPE_CHOICES, ENGINES, LENGTH_POLICIES, ModelConfig, resolve_config
from protiso.embedding.run import embed, embed_sequences

__all__ = ["EmbedProgress", "chunk_windows", "DTYPE_CHOICES", "ENGINES", "LENGTH_POLICIES", "ModelConfig",
           "resolve_config", "embed", "embed_sequences"]
