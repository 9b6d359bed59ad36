"""Model zoo, built only from jcnn layers and combinators; each model is one ``serial(...)`` spec.

Parameter counts equal torchvision's for the same configuration (checked in
``tests/models/test_zoo.py``): AlexNet 61,100,840; VGG-11/13/16/19 132,863,336 / 133,047,848 /
138,357,544 / 143,667,240 (with BatchNorm 132,868,840 / 133,053,736 / 138,365,992 / 143,678,248);
ResNet-18/34/50 11,689,512 / 21,797,672 / 25,557,032; ResNeXt-50 32x4d 25,028,904; Wide
ResNet-50-2 68,883,240; GoogLeNet 6,624,904; MobileNetV2 3,504,872; EfficientNet-B0 5,288,548;
ConvNeXt-Tiny 28,589,128; DenseNet-121 7,978,856; the CIFAR ResNet-18 11,173,962; ResNet-101/152
44,549,160 / 60,192,808; DenseNet-161/169/201 28,681,000 / 14,149,480 / 20,013,928;
MobileNetV3-Small/Large 2,542,856 / 5,483,032; EfficientNet-B1..B4 7,794,184 / 9,109,994 /
12,233,232 / 19,341,616; SqueezeNet 1.1 1,235,496; ShuffleNetV2 1.0x 2,278,604; MNASNet 1.0
4,383,312; RegNetY-400MF 4,344,144; Inception v3 (no auxiliary head) 23,834,568. BatchNorm
follows PyTorch's conventions (:func:`jcnn.models.common.torch_batch_norm`; every builder takes
``batch_norm=`` to change it).

Children are keyed as torchvision's modules (:mod:`jcnn.models.common`): ``layer1/0/conv1``,
VGG's ``features/0`` and ``classifier/6``, so ``from_torchvision(name, state_dict)`` /
``to_torchvision(name, params, state)`` move whole torchvision models in and out by one rule
(:mod:`jcnn.interop.torchvision`).

Example:
    >>> _, params, _ = jcnn.init_shapes(resnet18(), (64, 64, 3))
    >>> params["layer1"]["0"]["conv1"]["kernel"].shape  # torchvision's layer1.0.conv1.weight
    (3, 3, 64, 64)
"""

from jcnn.interop.torchvision import SUPPORTED, from_torchvision, to_torchvision
from jcnn.models import transfer
from jcnn.models.alexnet import alexnet
from jcnn.models.common import squeeze_excitation
from jcnn.models.convnext import convnext_tiny
from jcnn.models.course import cnn, mlp
from jcnn.models.densenet import densenet121, densenet161, densenet169, densenet201
from jcnn.models.efficientnet import (
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_b4,
)
from jcnn.models.googlenet import googlenet, inception_module
from jcnn.models.inception import inception_v3
from jcnn.models.mnasnet import mnasnet1_0
from jcnn.models.mobilenet import mobilenet_v2
from jcnn.models.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from jcnn.models.regnet import regnet_y_400mf
from jcnn.models.resnet import (
    basic_block,
    bottleneck,
    cifar_resnet18,
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    wide_resnet50_2,
)
from jcnn.models.shufflenet import shufflenet_v2_x1_0
from jcnn.models.squeezenet import squeezenet1_1
from jcnn.models.unet import unet
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
    "SUPPORTED",
    "alexnet",
    "basic_block",
    "bottleneck",
    "cifar_resnet18",
    "cnn",
    "convnext_tiny",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "from_torchvision",
    "googlenet",
    "inception_module",
    "inception_v3",
    "mlp",
    "mnasnet1_0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_y_400mf",
    "resnet",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext50_32x4d",
    "shufflenet_v2_x1_0",
    "squeeze_excitation",
    "squeezenet1_1",
    "to_torchvision",
    "transfer",
    "unet",
    "vgg",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "wide_resnet50_2",
]
