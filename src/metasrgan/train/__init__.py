"""Training: configs, the GAN step, resumable state and the loop."""
