"""Benchmarks: `streamrec bench {e2e,model,state}` and the quality run.

Every figure comes from a run measured side by side with its ceilings, names the
machine and the versions (`report.py`) and is appended, dated, to
docs/BENCHMARKS.md with its plots. Nothing here is a timed assertion: tests only
check that the benchmark code runs and reports.

    e2e.py        the whole pipeline beside its ceilings, against a real broker
    runners.py    the processes e2e compares with the worker: passthrough, naive
    latency.py    produce-to-arrival latency at a fixed offered load
    model.py      encoder + search users/s by batch size; exact vs approximate index
    state.py      bytes per user in memory; changelog restore time
    report.py     machine description, local broker, the markdown report and plots

May import: every streamrec package but `streamrec.cli`.
"""
