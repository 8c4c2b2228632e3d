"""Data parallelism under ``torchrun``: which rank this process is, the few collectives the
trainer needs (``world``), and how the trainable weights live across ranks (``sharding``).

May import: the contracts only. Everything here is a no-op for a world of one.
"""
