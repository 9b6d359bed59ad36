"""Benchmarks of jcnn against other JAX front-ends and PyTorch: run ``python -m bench``."""
