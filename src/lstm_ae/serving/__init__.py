"""The serving room: images in, reconstructions out; the MLflow pyfunc; `lstm-ae reconstruct`."""
