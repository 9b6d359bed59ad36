"""Model zoo, built only from jcnn layers and combinators."""

from jcnn.models.course import cnn, mlp

__all__ = ["cnn", "mlp"]
