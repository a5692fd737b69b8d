"""Ingest proteins (FASTA, UniProt FASTA, Swiss-Prot flat files) and annotation TSVs."""
from protiso.ingest.loader import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]
