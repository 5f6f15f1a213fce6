"""The model room: the autoencoder built from a ModelConfig, the fit loop, the saved model file."""
