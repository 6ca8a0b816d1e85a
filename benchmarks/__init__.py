"""grm.benchmarks: run, score and time GRM models on tracking benchmarks (``grm-bench``). Never imports torch.

- :mod:`grm.benchmarks.datasets`: loaders for UAV123/UAV20L, LaSOT (+ extension), NfS, AVisT, GOT-10k,
  TrackingNet and OTB-100 in their official layouts;
- :mod:`grm.benchmarks.run`: one-pass evaluation with resumable, atomic per-sequence results;
- :mod:`grm.benchmarks.metrics` and :mod:`grm.benchmarks.analysis`: the PyTracking and OTB-toolkit
  protocols and GOT-10k's AO/SR (differences in ``benchmarks/PROTOCOLS.md``);
- :mod:`grm.benchmarks.report`, :mod:`grm.benchmarks.plots`: tables, JSON and PNG plots;
- :mod:`grm.benchmarks.speed`: latency and throughput; :mod:`grm.benchmarks.submission`: server zips.
"""
