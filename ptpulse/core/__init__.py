"""The base floor of PT Pulse: what every other package builds on, importing nothing of ours.

- config     where the stores live ($PTPULSE_HOME) and where the shipped data is (contracts, dbt project, app)
- contracts  the source contracts: the pure model and the ONE reader of ingestion/contracts/*.yml
- deid       the de-identification rule (PHI columns, excluded tables) and the de-identified twin
- lock       the pipeline lock (one writer at a time)
- progress   the `ProgressFn` callback type long-running library code accepts
- secrets    the installation secret behind patient_key, and its rotation
- sql        quoting identifiers and literals built from our own names

Layer rule (pyproject.toml [tool.importlinter], tests/cli/test_layers.py): nothing here imports ingestion,
seed_data, ml, app or the rest of ptpulse.
"""
