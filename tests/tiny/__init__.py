"""Builders of tiny random models (about 1 MB each), created at test time from configs and
saved to a temporary folder, so the loading code under test is the real ``from_pretrained``."""
