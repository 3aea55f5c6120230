"""Several chatactors nodes as one chat: the membership table and what performs its effects.

The decisions (who owns a key, who is alive) are in :mod:`chatactors.core.ring` and
:mod:`chatactors.core.membership`; this package does their I/O. The design is in docs/cluster.md.
"""
