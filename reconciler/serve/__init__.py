"""`reconciler serve`: the scheduled reconcile loop of watch/interval.py with an HTTP
surface: Prometheus metrics, health probes, a GitHub push webhook, notifications on
transitions and a dashboard. Every trigger only ends the loop's sleep early; the cycle it
starts re-reads everything, as a timer-started one does.
"""
