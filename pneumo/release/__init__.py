"""Release: the registered model (pyfunc package, served from code), the registry, promotion
gates, promotion and rollback, the model card, prediction on files, and scoring a version on a
labelled folder. Never trains."""
