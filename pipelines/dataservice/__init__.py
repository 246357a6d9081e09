"""The data-access service for AI teams: GA4GH DRS 1.5 over the curated store.

``binds serve-data --store URL --auth FILE`` (docs/drs.md) resolves DRS ids to the
files of committed versions, checks bearer tokens and GA4GH passports
(:func:`pipelines.dataservice.policy.decide` is the one place that says who may read what),
hands out short-lived signed links (:mod:`pipelines.dataservice.links`) that the service itself
serves with HTTP Range, and writes every decision to a hash-chained audit log
(:mod:`pipelines.dataservice.audit`).  The store itself can stay private: only the service
needs read credentials.
"""
