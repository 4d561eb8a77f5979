"""Evaluation: the threshold chosen on validation, metrics with patient-bootstrap CIs, plots,
explanations (occlusion heatmaps, error gallery), and how numbers read (format). Never trains."""
