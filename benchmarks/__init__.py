"""Benchmarks: `streamrec bench {e2e,model,compress,cold,ablation,...}`, quality.

Every figure comes from a run measured side by side with its ceilings, names the
machine and the versions (`report.py`) and is appended, dated, to
docs/BENCHMARKS.md with its plots. Nothing here is a timed assertion: tests only
check that the benchmark code runs and reports.

    e2e.py        the whole pipeline beside its ceilings, against a real broker
    contenders.py what e2e runs side by side: passthrough, worker, naive, model stage
    runners.py    the processes e2e compares with the worker: passthrough, naive, relay
    latency.py    produce-to-arrival latency at a fixed offered load
    clients.py    the relay on each Kafka adapter, side by side
    model.py      encoder + search users/s by batch size; exact vs approximate index
    compress.py   quantization and pruning of the games model: speed, memory, NDCG@10
    compress_quality.py  its quality table in docs/QUALITY.md (no torch)
    state.py      bytes per user in memory; changelog restore time
    soak.py       the worker at half load for minutes, restarted midway, sampled
    soak_report.py  the soak's series: growth verdict, CSV, plot
    catalogue.py  the games item table grown to a million items around its own clusters
    catalogue_e2e.py  the worker on the grown model beside the games one, at one rate
    hot_swap.py   a new version of a large model hot-swapped under load: loop gaps
    report.py     machine description, local broker, the markdown report and plots
    quality_games.py  regenerates docs/QUALITY.md (train seeds, warm starts, evaluate)
    quality_report.py its text: results, targets, seeds' spread, warm start, curve
    quality_tuning.py the preset's tuning runs, as data for that report
    train_ablation.py the training recipe, one knob at a time over seeds (validation)
    train_ablation_report.py  its section in docs/QUALITY.md (no torch)

May import: every streamrec package but `streamrec.cli`.
"""
