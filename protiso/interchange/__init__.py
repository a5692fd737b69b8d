"""Embedding interchange formats for `protiso import` / `protiso export` (issue 14).

Readers stream the files pLM users already have (UniProt per-protein.h5, ProtTrans /
bio_embeddings .h5, ESM extract.py .pt, .npz/.npy with ids, Parquet) as validated float32
batches; writers produce UniProt-style HDF5, .npz and Parquet. Only numpy, pyarrow, h5py (and
torch, lazily, for .pt) are used; nothing in these modules touches the store. The store side:
`protiso.interchange.importer` (files -> an imported run) and `protiso.interchange.exporter`
(a run -> a file).
"""
from protiso.interchange._common import Batch, Source, accession
from protiso.interchange.export import (write_h5, write_h5_batches, write_npz, write_npz_batches,
                                       write_parquet)
from protiso.interchange.formats import FORMATS, Reader, detect_format, open_source

__all__ = ["Batch", "Source", "Reader", "FORMATS", "accession", "detect_format", "open_source",
           "write_h5", "write_h5_batches", "write_npz", "write_npz_batches", "write_parquet"]
