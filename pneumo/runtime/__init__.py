"""The process pneumo runs in: which Keras backend and device, what decides determinism, and the
library chatter kept off the console."""
