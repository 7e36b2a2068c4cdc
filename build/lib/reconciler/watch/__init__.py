"""Long-running reconcilers: ``watch`` (file events) and ``reconcile --interval`` (a timer).

Events and timers are triggers only: each one re-reads the whole desired state and goes
through Engine.apply, which takes the registry lock and plans inside it, so any number of
watchers, scheduled reconcilers and one-off applies on one registry never interleave.
"""
