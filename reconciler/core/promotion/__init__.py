"""Promotion between targets: the gate on a target's plan, where its versions came from, and
the status matrix of every target."""
