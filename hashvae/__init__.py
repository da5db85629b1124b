"""hashvae: semi-supervised semantic hashing with variational autoencoders."""
