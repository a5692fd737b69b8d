"""Protein pairs: sampling, alignment score and identity, embedding distances, correlations."""
