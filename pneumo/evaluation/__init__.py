"""Evaluation: the threshold chosen on validation, metrics with patient-bootstrap CIs, plots,
explanations (occlusion heatmaps, error gallery), seed noise between configurations (seeds) and
which config keys explain a metric (importance), and how numbers read (format). Never trains."""
