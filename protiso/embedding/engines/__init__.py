"""Engines that run an embedding job: the local loop lives in embedding.run; `ray` here."""
