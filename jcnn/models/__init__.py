"""Model zoo, built only from jcnn layers and combinators; each model is one ``serial(...)`` spec.

Parameter counts equal torchvision's for the same configuration (checked in
``tests/models/test_zoo.py``): AlexNet 61,100,840; VGG-11/13/16/19 132,863,336 / 133,047,848 /
138,357,544 / 143,667,240 (with BatchNorm 132,868,840 / 133,053,736 / 138,365,992 / 143,678,248);
ResNet-18/34/50 11,689,512 / 21,797,672 / 25,557,032; GoogLeNet 6,624,904; the CIFAR ResNet-18
11,173,962.
"""

from jcnn.models import transfer
from jcnn.models.alexnet import alexnet
from jcnn.models.course import cnn, mlp
from jcnn.models.googlenet import googlenet, inception_module
from jcnn.models.resnet import (
    basic_block,
    bottleneck,
    cifar_resnet18,
    resnet,
    resnet18,
    resnet34,
    resnet50,
)
from jcnn.models.vgg import (
    vgg,
    vgg11,
    vgg11_bn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg19,
    vgg19_bn,
)

__all__ = [
    "alexnet",
    "basic_block",
    "bottleneck",
    "cifar_resnet18",
    "cnn",
    "googlenet",
    "inception_module",
    "mlp",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "transfer",
    "vgg",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]
