"""What the learned models must beat: PCA at the same code size (pca) and, for restoration,
scikit-image's classical denoisers and deconvolution tuned on validation images (classical)."""
