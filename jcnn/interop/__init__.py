"""Models in and out of jcnn: PyTorch and torchvision weights (``porting``, ``torchvision``)."""
