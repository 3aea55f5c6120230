"""The pure chat core: rules and state machines with no actors, sockets or SQL.

Everything here is synchronous and deterministic (time comes through a :class:`Clock`), so it is
tested on its own; the actors in :mod:`chatactors.actors` are thin shells that feed it messages.
"""
