"""PyTorch eager on the CPU (channels-first), one thread per core; FLOPs from FlopCounterMode.
W5-dp adds Opacus (per-sample gradients and its DP optimiser) when it is importable. R50 (the
device check's W4, ResNet-50 v1.5) runs channels-last, under ``torch.autocast`` to bfloat16 when
its precision is ``mixed_bfloat16`` (float32 params, as the JAX peers)."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.workloads import common


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 5), nn.Conv2d(8, 16, 3), nn.Linear(400, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def _bn(c):
    return nn.BatchNorm2d(c, eps=common.BN_EPS, momentum=1 - common.BN_MOMENTUM)


class Block(nn.Module):
    def __init__(self, cin, c, s):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, s, 1, bias=False), _bn(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), _bn(c)
        self.short = nn.Sequential()
        if s != 1 or cin != c:
            self.short = nn.Sequential(nn.Conv2d(cin, c, 1, s, bias=False), _bn(c))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.short(x))


class ResNet18(nn.Module):
    def __init__(self, classes, imagenet):
        super().__init__()
        k, s, p = (7, 2, 3) if imagenet else (3, 1, 1)
        stem = [nn.Conv2d(3, 64, k, s, p, bias=False), _bn(64), nn.ReLU()]
        if imagenet:
            stem.append(nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for c, st in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Block(cin, c, st), Block(c, c, 1)]
            cin = c
        self.body = nn.Sequential(*stem, *blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(self.body(x).mean(dim=(2, 3)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 carrying the stride (v1.5), 1x1 expand to 4x, each with BatchNorm;
    a projection shortcut when the shape changes."""

    def __init__(self, cin, c, s):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), _bn(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, s, 1, bias=False), _bn(c)
        self.conv3, self.bn3 = nn.Conv2d(c, 4 * c, 1, bias=False), _bn(4 * c)
        self.short = nn.Sequential()
        if s != 1 or cin != 4 * c:
            self.short = nn.Sequential(nn.Conv2d(cin, 4 * c, 1, s, bias=False), _bn(4 * c))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(self.bn3(self.conv3(h)) + self.short(x))


class ResNet50(nn.Module):
    """ResNet-50 v1.5 with the ImageNet stem and ``blocks`` bottlenecks per stage."""

    def __init__(self, classes, blocks=common.R50_BLOCKS):
        super().__init__()
        stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), _bn(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        layers, cin = [], 64
        for i, (n, c) in enumerate(zip(blocks, (64, 128, 256, 512))):
            for b in range(n):
                layers.append(Bottleneck(cin, c, 2 if i > 0 and b == 0 else 1))
                cin = 4 * c
        self.body = nn.Sequential(*stem, *layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.body(x).mean(dim=(2, 3)))


def _opacus(model: nn.Module, opt: torch.optim.Optimizer, batch: int):
    """W5-dp: Opacus's per-sample gradients (GradSampleModule hooks) and DP optimiser (clip to
    DP_CLIP, noise DP_NOISE, mean over the expected batch), as its PrivacyEngine builds them."""
    try:
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer
    except Exception as err:  # noqa: BLE001 - any import failure means "skip this peer"
        raise ImportError(f"opacus not importable ({type(err).__name__}: {err})") from None
    dp_model = GradSampleModule(model)
    dp_opt = DPOptimizer(
        opt,
        noise_multiplier=common.DP_NOISE,
        max_grad_norm=common.DP_CLIP,
        expected_batch_size=batch,
    )
    return dp_model, dp_opt


class Runner:
    def __init__(self, spec):
        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(0)
        self.spec, self.items, name = spec, common.items_per_iter(spec), spec["name"]
        x, y = common.data(spec, channels_first=True)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        if name in ("W2", "W3"):
            self.model = ResNet18(common.num_classes(spec), name == "W3")
        elif name == "R50":
            self.model = ResNet50(1000, tuple(spec.get("blocks", common.R50_BLOCKS)))
        else:
            self.model = CNN()
        self.channels_last = name == "R50"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.bf16 = spec.get("precision") == "mixed_bfloat16"
        if name == "W3":
            self.model.eval()
        else:
            self.model.train()
            params = self.model.parameters()
            if name in ("W2", "R50"):
                self.opt = torch.optim.SGD(params, lr=common.SGD_LR, momentum=common.SGD_MOMENTUM)
            else:
                self.opt = torch.optim.Adam(params, lr=common.ADAM_LR)
        if spec.get("private"):
            self.model, self.opt = _opacus(self.model, self.opt, spec["batch"])
        self.epoch = 0

    def _train(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.model(x), y)  # autocast runs the loss in float32
        loss.backward()
        self.opt.step()

    def compile(self):
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.run(1)
        return float(counter.get_total_flops())

    def run(self, n):
        name = self.spec["name"]
        for _ in range(n):
            if name == "W3":
                with torch.inference_mode():
                    self.model(self.x).argmax(-1)
            elif name == "W4":
                for idx in common.epoch_batches(self.spec["n"], self.spec["batch"], self.epoch):
                    t = torch.from_numpy(idx)
                    self._train(self.x[t], self.y[t])
                self.epoch += 1
            else:
                self._train(self.x, self.y)


def make(spec: dict):
    return Runner(spec)
