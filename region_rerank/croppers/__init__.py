"""Croppers: decide FULL or REGION for a query (``full``, ``vlm``, ``grounding``)."""
