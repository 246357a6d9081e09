"""Prefect: the session (a configured or a temporary server), the reporter that turns a run's
job events into flow and task runs, the flows, the inbox that starts runs by itself, and the
unit's long-running service. Built on ``pipelines.run``; nothing below imports it.
"""
