"""The tuning room: the search space and the study's bookkeeping (search), the objective that
trains one trial (objective), the runner that spawns and supervises worker processes (workers),
what each worker process does (trials), and the light entry point of a spawned process (spawn).

Only objective and trials import Keras: the runner starts without TensorFlow."""
