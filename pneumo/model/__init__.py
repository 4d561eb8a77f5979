"""Models: builders turn plain values into compiled Keras models (cnn, resnet, transfer, an
ensemble, the Keras Tuner HyperModel that picks the values), and the layers a model carries
(training-time augmentation, standardisation). Knows nothing of MLflow or files."""
