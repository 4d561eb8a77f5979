"""The search: Keras Tuner through its public Tuner and oracles (each trial an MLflow child run), what every
fit gets, the trial guards, the distributed roles, seed repeats and the live console. Never
evaluates on test."""
