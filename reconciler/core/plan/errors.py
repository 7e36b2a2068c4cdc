"""Errors of saved plans, in a module of their own: the command line imports them at
start-up, before (and often without) loading the planner."""


class StalePlan(Exception):
    """The saved plan no longer applies: the registry or the source moved."""


class BadPlanFile(Exception):
    """The file is not a saved plan this reconciler can apply."""
