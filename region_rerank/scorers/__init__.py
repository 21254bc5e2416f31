"""Scorers: bi-encoders (``clip``, ``sentence_transformers``) and cross-encoders."""
