"""Isotropy of embedding spaces from streaming, mergeable sufficient statistics."""
