"""Run infrastructure: what makes a run's model calls durable and its files dependable.

``calls`` (model calls as data, the sync and async drivers, per-role limits), ``call_identity``
(which call is running: task scope and plan position), ``cache`` (the SQLite LLM cache),
``journal`` (the per-run response journal, replayed after a crash), ``checkpoints`` (where
checkpoints live), ``json_files`` (atomic writes, reads with clear errors), ``run_files`` (the
files of a run directory).
"""
