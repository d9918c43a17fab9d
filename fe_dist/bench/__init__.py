"""fe-bench: scaling benchmarks of fe_dist on a user's own machines (see `fe_dist.bench.cli`).

Modules: `workloads` (models, data, schedules), `worker` (one rank), `launch` (launch commands,
host check), `results` (what ranks and runs report), `costmodel` (the fitted ring-allreduce
model), `report` (JSON, markdown, PNG), `cli` (the command). The hand-written Horovod reference
loop is `fe_dist.distributed.reference` (it imports Horovod).
"""
