"""Everything that talks to MLflow, one room per job; import the room you need
(``from lstm_ae.tracking import runs``):

- store: where runs go (the project's SQLite store or MLFLOW_TRACKING_URI) and the experiment
- health: whether a tracking server answers now, in one quick probe
- runs: what every run carries (tags, params, data, figures) and how it starts, nests and ends
- curves: the per-epoch curves, kept through a server outage
- registry: the model as MLflow logs and serves it, registered, the best crowned `champion`
- unsent: what an outage kept of a run, on disk until `lstm-ae send-runs`
- ui: where to browse the runs (the runs table in a saved view)
- server: `lstm-ae tracking-server`, MLflow on PostgreSQL
- databases: database URLs made to work with the installed driver
"""
