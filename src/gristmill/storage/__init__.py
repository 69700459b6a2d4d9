"""Artifact layout, atomic writes, typed metadata, hashing and the directory lock."""
