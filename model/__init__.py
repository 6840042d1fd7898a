"""mnist-train: the Caicloud tutorial's MNIST models on MultiWorkerMirroredStrategy."""

__version__ = "0.1.0"
