"""Identified product events: the in-memory columnar log and the loaders that fill it."""
