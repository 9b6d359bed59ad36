"""The course's material: signal views of convolution, localization, and plots (``viz``)."""
