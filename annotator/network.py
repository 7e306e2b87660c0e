"""Landmark network architectures: image crop in, 68 box-relative points out.

Every network takes a BGR crop as a float tensor in 0..255 (N, 3, S, S),
normalises it with the training data's mean and std (stored as buffers, so
they travel with the weights) and returns (N, 68, 2) box-relative points
(box edges at 0 and 1). The last layer adds a learned offset to the training
mean shape and is linear: points may fall outside the box (chins, brows).

A network's ``frame`` says what its crop is: ``box`` (the detector box, the
first stage) or ``shape`` (a refinement stage: the face turned, scaled and
shifted so that the previous stage's points best match ``mean_shape``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

N_POINTS = 68

# Left/right permutation of the 68-point iBUG markup under a horizontal flip.
FLIP_PERMUTATION = (list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
                    + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
                    + [54, 53, 52, 51, 50, 49, 48] + [59, 58, 57, 56, 55]
                    + [64, 63, 62, 61, 60] + [67, 66, 65])


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions and a shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


def onet(width: int) -> nn.Sequential:
    """MTCNN's O-Net shape (conv/pool x4, then dense), with batch norm."""
    w = width
    return nn.Sequential(conv_bn(3, w), nn.MaxPool2d(3, 2, 1), conv_bn(w, 2 * w), nn.MaxPool2d(3, 2, 1),
                         conv_bn(2 * w, 2 * w), nn.MaxPool2d(2, 2), conv_bn(2 * w, 4 * w),
                         nn.MaxPool2d(2, 2))


def resnet18(width: int) -> nn.Sequential:
    """ResNet-18 layout (stem + 4 stages of 2 basic blocks) at base ``width`` channels."""
    w = [width, 2 * width, 4 * width, 8 * width]
    layers = [conv_bn(3, w[0], 2)]
    cin = w[0]
    for i, cout in enumerate(w):
        layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers)


def cnn8(width: int) -> nn.Sequential:
    """Eight 3x3 convolutions, halving resolution every two (plain and fast)."""
    w = [width, 2 * width, 4 * width, 8 * width]
    layers, cin = [], 3
    for cout in w:
        layers += [conv_bn(cin, cout, 2), conv_bn(cout, cout)]
        cin = cout
    return nn.Sequential(*layers)


class UNetLite(nn.Module):
    """Encoder to 1/8 resolution, decoder back to 1/4 with a skip connection (for heatmaps)."""

    def __init__(self, width: int):
        super().__init__()
        w = width
        self.down4 = nn.Sequential(conv_bn(3, w, 2), conv_bn(w, w), conv_bn(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1))
        self.down8 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 1))
        self.up = nn.Sequential(conv_bn(4 * w + 2 * w, 2 * w), BasicBlock(2 * w, 2 * w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x4 = self.down4(x)
        x8 = self.down8(x4)
        up = nn.functional.interpolate(x8, size=x4.shape[-2:], mode="bilinear", align_corners=False)
        return self.up(torch.cat([up, x4], 1))


class SoftArgmax(nn.Module):
    """68 heatmaps per head -> expected point positions in crop-relative units (integral regression)."""

    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(channels, N_POINTS * heads, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        n, k, hh, ww = h.shape
        p = torch.softmax(h.flatten(2), 2).view(n, k, hh, ww)
        xs = (torch.arange(ww, dtype=h.dtype) + 0.5) / ww
        ys = (torch.arange(hh, dtype=h.dtype) + 0.5) / hh
        return torch.stack([(p.sum(2) * xs).sum(2), (p.sum(3) * ys).sum(2)], 2)


class FusedGrid(nn.Module):
    """Features on a 1/8 grid of the crop (``down8``, ``cin8`` channels) with context from a 1/16 stage
    (``down16``, ``cin16``) brought back up and fused, to ``channels`` = ``4 * width`` (for grid heads)."""

    def __init__(self, down8: nn.Module, down16: nn.Module, cin8: int, cin16: int, width: int):
        super().__init__()
        self.down8, self.down16 = down8, down16
        self.fuse = nn.Sequential(nn.Conv2d(cin8 + cin16, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width),
                                  nn.ReLU(inplace=True), conv_bn(4 * width, 4 * width))
        self.channels = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x8 = self.down8(x)
        up = nn.functional.interpolate(self.down16(x8), size=x8.shape[-2:], mode="nearest")
        return self.fuse(torch.cat([x8, up], 1))


class GridBackbone(FusedGrid):
    """A small ResNet to the 1/8 grid (``4 * width`` channels), its 1/16 context at ``8 * width``."""

    def __init__(self, width: int):
        w = width
        down8 = nn.Sequential(conv_bn(3, w, 2), conv_bn(w, w), conv_bn(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1),
                              BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 1))
        down16 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w, 1))
        super().__init__(down8, down16, 4 * w, 8 * w, w)


class Residual(nn.Module):
    """dlib's ``ares`` / ``ares_down``: relu(block(x) + x); a downsampling block's shortcut is x average-pooled
    (the sum as dlib's ``add_prev``: :func:`add_prev`)."""

    def __init__(self, block: nn.Sequential, pool: nn.Module | None = None):
        super().__init__()
        self.block, self.pool = block, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if self.pool is not None:
            x = self.pool(x)
        return torch.relu(add_prev(y, x))


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger of each dimension, a missing value counted as zero."""
    size = [max(u, v) for u, v in zip(a.shape[1:], b.shape[1:])]
    return _padded(a, size) + _padded(b, size)


def _padded(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    channels, rows, cols = (s - n for s, n in zip(size, x.shape[1:]))
    return nn.functional.pad(x, (0, cols, 0, rows, 0, channels)) if channels or rows or cols else x


def face_level(cin: int, cout: int, down: bool, blocks: int) -> nn.Sequential:
    """A level of dlib's face ResNet with "same" padding: ``blocks`` residual blocks (conv3x3, ReLU, conv3x3;
    biases, no batch norm), the first at stride 2 with a 2x2 average-pooled shortcut when ``down``."""
    def block(i: int) -> Residual:
        stride = 2 if down and i == 0 else 1
        body = nn.Sequential(nn.Conv2d(cin if i == 0 else cout, cout, 3, stride, 1), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, 1, 1))
        return Residual(body, nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) if stride == 2 else None)
    return nn.Sequential(*(block(i) for i in range(blocks)))


class FaceGridBackbone(FusedGrid):
    """:class:`GridBackbone`'s layout on the first levels of dlib's face recognition ResNet, with its layer
    shapes (so that its weights load: ``training/face_resnet.py``).

    ``down8`` is dlib's stem (7x7/2 conv, ReLU, 3x3/2 max pool), ``alevel4`` (32 channels) and ``alevel3``
    (64, stride 8); ``down16`` is ``alevel2`` (128, stride 16). Unlike dlib's, the stride-2 layers are padded
    "same" style: a crop of 16k pixels gives a 2k grid.
    """

    def __init__(self, width: int):
        stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        alevel4, alevel3 = face_level(32, 32, False, 3), face_level(32, 64, True, 4)
        alevel2 = face_level(64, 128, True, 3)
        down8 = nn.Sequential(OrderedDict(stem=stem, alevel4=alevel4, alevel3=alevel3))
        super().__init__(down8, alevel2, 64, 128, width)


GRID_BACKBONES = {"grid": GridBackbone, "gridface": FaceGridBackbone}


def is_grid(arch: str) -> bool:
    """Whether ``arch`` names a grid precision stage (:class:`GridNet`)."""
    return arch in GRID_BACKBONES


def add_buffers(net: nn.Module) -> None:
    """The buffers every network carries with its weights: the training crops' per-channel ``mean`` and
    ``std`` (input normalisation) and the crop-relative ``mean_shape`` (set by training)."""
    net.register_buffer("mean", torch.zeros(1, 3, 1, 1))
    net.register_buffer("std", torch.ones(1, 3, 1, 1))
    net.register_buffer("mean_shape", torch.full((N_POINTS, 2), 0.5))


ARCHITECTURES = {"onet": onet, "resnet18": resnet18, "cnn8": cnn8, "heatmap": UNetLite}


class LandmarkNet(nn.Module):
    """Backbone + dense head regressing 68 box-relative points.

    With ``heads`` > 1 the last layer has one output per markup convention
    (training data annotated another way, e.g. YouTube Faces' jaw and brows,
    trains its own head); inference uses head 0, the 300-W markup.
    """

    def __init__(self, arch: str = "cnn8", size: int = 62, width: int = 32, hidden: int = 256,
                 frame: str = "box", heads: int = 1):
        super().__init__()
        self.config = {"arch": arch, "size": size, "width": width, "hidden": hidden, "frame": frame}
        if heads != 1:
            self.config["heads"] = heads
        self.features = ARCHITECTURES[arch](width)
        with torch.no_grad():
            shape = self.features(torch.zeros(1, 3, size, size)).shape
        if arch == "heatmap":
            self.head = SoftArgmax(shape[1], heads)
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(shape.numel(), hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, 2 * N_POINTS * heads))
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        add_buffers(self)

    def forward(self, x: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        """Points from head 0 (the 300-W markup), or from ``head[i]`` for sample i (training)."""
        x = self.head(self.features((x - self.mean) / self.std)).view(len(x), -1, N_POINTS, 2)
        if self.config["arch"] != "heatmap":  # heatmaps give positions, not offsets from the mean shape
            x = x + self.mean_shape
        return x[:, 0] if head is None else x[torch.arange(len(x)), head]


class GridNet(nn.Module):
    """Precision stage with a spatially shared output: per point, a score for each cell of a 1/8 grid of
    the crop, a sub-cell offset and a Laplace scale in every cell (heatmap + offset, as PIPNet).

    The point is the best cell's centre plus that cell's offset; the scale there is the point's
    uncertainty. ``forward`` returns (N, 68, 3): crop-relative x, y and the log Laplace scale (crop-relative
    units, per coordinate). ``maps`` gives the raw (N, 68, 4, H, W) grid (score, dx, dy, log scale) a head
    trains on. Same input and normalisation buffers as :class:`LandmarkNet` (``frame`` is ``shape``). The
    ``arch`` picks the backbone: ``grid`` :class:`GridBackbone`, ``gridface`` :class:`FaceGridBackbone`.
    """

    def __init__(self, arch: str = "grid", size: int = 128, width: int = 16, hidden: int = 0,
                 frame: str = "shape", heads: int = 1):
        super().__init__()
        self.config = {"arch": arch, "size": size, "width": width, "hidden": hidden, "frame": frame}
        if heads != 1:
            self.config["heads"] = heads
        self.features = GRID_BACKBONES[arch](width)
        self.head = nn.Conv2d(self.features.channels, 4 * N_POINTS * heads, 1)
        add_buffers(self)

    def maps(self, x: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 68, 4, H, W) grid outputs of head 0 (the only one computed), or of ``head[i]`` for sample i."""
        features = self.features((x - self.mean) / self.std)
        if head is None:  # the first 4 * 68 output channels are head 0's
            k = 4 * N_POINTS
            out = nn.functional.conv2d(features, self.head.weight[:k], self.head.bias[:k])
            return out.view(len(out), N_POINTS, 4, *out.shape[-2:])
        out = self.head(features)
        n, _, h, w = out.shape
        return out.view(n, -1, N_POINTS, 4, h, w)[torch.arange(n), head]

    def forward(self, x: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        out = self.maps(x, head)
        n, k, _, h, w = out.shape
        best = out[:, :, 0].flatten(2).argmax(2)  # (N, 68)
        at = out.flatten(3).gather(3, best[:, :, None, None].expand(n, k, 4, 1))[..., 0]  # (N, 68, 4)
        x_pos = (best % w + 0.5 + at[..., 1]) / w
        y_pos = (torch.div(best, w, rounding_mode="floor") + 0.5 + at[..., 2]) / h
        return torch.stack([x_pos, y_pos, at[..., 3] - torch.log(torch.tensor(float(w)))], 2)


class RollNet(nn.Module):
    """In front of the cascade: the face's roll (in-plane rotation) from its detector box, at any angle.

    Same input as a box-frame :class:`LandmarkNet`; outputs (N, 2) = (cos, sin) of the angle of the
    similarity taking ``mean_shape`` to the face's points, in image coordinates (y down), unnormalised.
    """

    def __init__(self, arch: str = "cnn8", size: int = 62, width: int = 8, hidden: int = 64, frame: str = "roll"):
        super().__init__()
        self.config = {"arch": arch, "size": size, "width": width, "hidden": hidden, "frame": frame}
        self.features = ARCHITECTURES[arch](width)
        with torch.no_grad():
            shape = self.features(torch.zeros(1, 3, size, size)).shape
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(shape.numel(), hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 2))
        add_buffers(self)

    def forward(self, x: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std))


def roll_of(points: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """(N, 2) unit (cos, sin) of the rotation of the least-squares similarity taking ``template`` (68, 2) to
    each of ``points`` (N, 68, 2), image coordinates."""
    a = template - template.mean(0)
    b = points - points.mean(1, keepdim=True)
    p = (a[:, 0] * b[..., 0] + a[:, 1] * b[..., 1]).sum(1)
    q = (a[:, 0] * b[..., 1] - a[:, 1] * b[..., 0]).sum(1)
    return nn.functional.normalize(torch.stack([p, q], 1), dim=1)


class Averaged(nn.Module):
    """One stage made of several networks trained alike (other seeds): the average of their outputs.

    The members share the input crop, so they must share ``mean_shape`` (the same training data gives the
    same one); ``config`` is the first member's with ``members``, their number.
    """

    def __init__(self, members: int = 2, **config):
        super().__init__()
        self.members = nn.ModuleList(network_for(config) for _ in range(members))
        self.config = {**self.members[0].config, "members": members}

    @property
    def mean_shape(self) -> torch.Tensor:
        return self.members[0].mean_shape

    def forward(self, x: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([net(x, head) for net in self.members]).mean(0)


def network_for(config: dict) -> nn.Module:
    """The network a stage's ``config`` describes (a roll estimator, a landmark stage, a grid stage, or
    several averaged)."""
    if "members" in config:
        return Averaged(**config)
    if config.get("frame") == "roll":
        return RollNet(**config)
    return GridNet(**config) if is_grid(config.get("arch", "")) else LandmarkNet(**config)
