"""Configuration: the structured-config types (schema), search-space declarations (space), the
project paths, the defaults commands read from conf/, and ConfigError. Values live in conf/ only.
Imports neither Keras nor MLflow."""
