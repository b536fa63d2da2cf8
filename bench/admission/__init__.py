"""Admission benchmarks: the policy engine, the HTTPS webhook, the real API server, memory.

Run every phase with ``.venv/bin/python -m bench.admission`` (``--quick`` for a smoke run);
docs/performance.md ("Admission") explains the method and holds the last results.

    workloads       the policy set, the small and the large pod, AdmissionReview bodies
    stats           percentiles and summaries
    engine_bench    phase 1: the pure engine in-process
    server          a benchmark HTTPS server process: the real admission app, or a no-op one
    client          a keep-alive HTTPS load client, run as its own process
    https_bench     phases 2-3: modelward's app against the no-op app over HTTPS
    cluster_bench   phases 4-5: through a real kube-apiserver, and the operator's memory
    report          results JSON and the docs/performance.md section
"""
