"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in torch: dlib's weights.

The network is dlib's ``anet_type`` (examples/dnn_face_recognition_ex.cpp), trained
by dlib on about 3 million faces to give 128-D descriptors of 150 px face chips
(``dlib.get_face_chip``). This module reads dlib's own model file, folds each
``affine`` layer into the convolution before it, and repeats dlib's arithmetic:
no padding in the stride-2 convolutions and pools, and the residual sums of
tensors of different shapes zero-padded at the end of each dimension (at 150 px
the ``alevel1`` shortcut is 4x4 and its block's output 3x3; the block and the sum
are ``annotator.network``'s ``Residual`` and ``add_prev``). Its first levels
(:meth:`FaceResNet.trunk`) are a backbone pretrained on faces: :func:`load_face_trunk`
starts the ``gridface`` precision stage from them.
``tests/test_face_resnet.py`` checks the descriptors against
``dlib.face_recognition_model_v1`` on real faces.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from annotator.dlib_file import Reader, folded, packaged_model
from annotator.network import FaceGridBackbone, Residual

SIZE = 150  # input_rgb_image_sized<150>
# anet_type's levels, input side first: filters, whether the first block downsamples, blocks
LEVELS = {"alevel4": (32, False, 3), "alevel3": (64, True, 4), "alevel2": (128, True, 3),
          "alevel1": (256, True, 3), "alevel0": (256, True, 1)}


def model_path() -> Path:
    """dlib's model file, as the ``face_recognition_models`` package ships it."""
    return packaged_model("dlib_face_recognition_resnet_model_v1.dat", "--arch gridface")


class Normalise(nn.Module):
    """input_rgb_image_sized: RGB 0..255 less dlib's mean colour, divided by 256."""

    def __init__(self, mean_rgb: tuple[float, float, float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / 256.0


class FaceResNet(nn.Module):
    """dlib's anet_type: (N, 3, 150, 150) RGB 0..255 to (N, 128) descriptors (the fc output, not normalised)."""

    def __init__(self, body: nn.Sequential, fc: nn.Linear):
        super().__init__()
        self.body = body  # normalise, stem, alevel4 ... alevel0
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3)))  # avg_pool_everything, fc_no_bias

    def trunk(self, level: str = "alevel3") -> nn.Sequential:
        """The network from the RGB 0..255 input to the end of ``level`` (sharing this model's modules).

        At 150 px ``alevel4`` ends at stride 4 with 32 channels (35x35), ``alevel3`` at stride 8
        with 64 (17x17), ``alevel2`` at stride 16 with 128 (8x8); ``alevel1`` 4x4 and ``alevel0`` 2x2,
        both with 256.
        """
        return self.body[:list(self.body._modules).index(level) + 1]


PRETRAINED = "dlib_face_recognition_resnet_model_v1"  # what a run started from it records (fit's "pretrained")


def load_face_trunk(backbone: FaceGridBackbone, mean: torch.Tensor, std: torch.Tensor,
                    path: str | Path | None = None) -> None:
    """Copy dlib's stem, ``alevel4``, ``alevel3`` and ``alevel2`` (:func:`read_face_resnet` of ``path``) into
    ``backbone``, its first convolution adapted to the network's input.

    The network sees BGR crops as (x - ``mean``) / ``std`` (per channel, (1, 3, 1, 1)), dlib's first
    convolution RGB crops as (x - dlib's mean colour) / 256: its input channels are reversed, each scaled by
    std / 256, and its bias takes what the weights give on (mean - dlib's mean) / 256. Same outputs as
    dlib's away from the crop's border (where the padding differs: zeros in each normalisation).
    """
    model = read_face_resnet(path)
    down8 = backbone.down8
    for ours, name in ((down8.stem, "stem"), (down8.alevel4, "alevel4"), (down8.alevel3, "alevel3"),
                       (backbone.down16, "alevel2")):
        ours.load_state_dict(getattr(model.body, name).state_dict())
    conv = down8.stem[0]
    weight = conv.weight.detach().double().flip(1)  # input channels in BGR order
    shift = (mean.double() - model.body.normalise.mean.double().flip(1)) / 256
    with torch.no_grad():
        conv.weight.copy_(weight * std.double().view(1, 3, 1, 1) / 256)
        conv.bias.add_((weight * shift.view(1, 3, 1, 1)).sum((1, 2, 3)).float())


def read_face_resnet(path: str | Path | None = None) -> FaceResNet:
    """Read dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (default: :func:`model_path`), in eval mode."""
    path = Path(path or model_path())
    r = Reader(path.read_bytes())
    r.expect(r.int(), 1)
    r.expect(r.str(), "loss_metric_2")
    r.float(), r.float()  # margin and distance threshold: training only
    layers, tags = _layer_counts()
    versions = [r.int() for _ in range(layers + tags)]  # outermost first; tag and skip layers are version 1
    versions = [v for v in versions if v != 1]
    r.expect(len(versions), layers)
    r.expect(r.str(), "input_rgb_image_sized")
    mean_rgb = (r.float(), r.float(), r.float())
    r.expect((r.int(), r.int()), (SIZE, SIZE))
    parts = r.layers(versions, _layer_details, path)
    return _network(parts, mean_rgb).eval()


def _layer_counts() -> tuple[int, int]:
    """The add_layers and the tag and skip layers of anet_type."""
    plain = sum(blocks - down for _, down, blocks in LEVELS.values())
    downs = sum(down for _, down, _ in LEVELS.values())
    return 4 + 7 * plain + 8 * downs + 2, plain + 3 * downs  # stem, blocks, avg_pool_everything and fc


def _layer_details(r: Reader) -> dict:
    name = r.str()
    if name == "con_4":
        return r.con(name)
    if name == "affine_":
        params = r.tensor().ravel()
        r.alias(), r.alias()
        r.int()  # mode: one scale and shift a channel
        half = len(params) // 2
        return {"kind": "affine", "scale": params[:half], "shift": params[half:]}
    if name == "relu_":
        return {"kind": "relu"}
    if name in ("max_pool_2", "avg_pool_2"):
        size, stride, padding = (r.int(), r.int()), (r.int(), r.int()), (r.int(), r.int())
        return {"kind": name[:-2], "size": size, "stride": stride, "padding": padding}
    if name == "add_prev_":
        return {"kind": "add_prev"}
    if name == "fc_2":
        outputs, inputs = r.int(), r.int()
        params = r.tensor().ravel()
        r.alias(), r.alias()
        r.expect(r.int(), 1)  # FC_NO_BIAS
        [r.float() for _ in range(4)]
        return {"kind": "fc", "weight": params[:inputs * outputs].reshape(inputs, outputs).T}
    raise ValueError(f"unexpected layer {name!r} in the model file")


def _network(parts: list[dict], mean_rgb: tuple[float, float, float]) -> FaceResNet:
    """anet_type from its layers, input side first."""
    parts = iter(parts)
    body = OrderedDict(normalise=Normalise(mean_rgb))
    body["stem"] = nn.Sequential(_conv(parts), _relu(parts), _pool(_take(parts, "max_pool")))
    for name, (filters, down, blocks) in LEVELS.items():
        body[name] = nn.Sequential(*(_residual(parts, down and i == 0) for i in range(blocks)))
        if body[name][-1].block[-1].out_channels != filters:
            raise ValueError(f"expected {filters} filters in {name}")
    if _take(parts, "avg_pool")["size"] != (0, 0):
        raise ValueError("expected avg_pool_everything before the fc layer")
    weight = torch.tensor(_take(parts, "fc")["weight"])
    fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    fc.weight.data.copy_(weight)
    return FaceResNet(nn.Sequential(body), fc)


def _residual(parts, down: bool) -> Residual:
    block = nn.Sequential(_conv(parts), _relu(parts), _conv(parts))
    pool = _pool(_take(parts, "avg_pool")) if down else None
    _take(parts, "add_prev")
    _relu(parts)
    return Residual(block, pool)


def _take(parts, kind: str) -> dict:
    part = next(parts)
    if part["kind"] != kind:
        raise ValueError(f"expected a {kind} layer in the model file, found {part['kind']}")
    return part


def _relu(parts) -> nn.ReLU:
    _take(parts, "relu")
    return nn.ReLU()


def _conv(parts) -> nn.Conv2d:
    """A convolution with the affine layer after it folded in."""
    con = _take(parts, "con")
    weight, bias = folded(con, _take(parts, "affine"))
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:], con["stride"], con["padding"])
    conv.weight.data.copy_(torch.from_numpy(weight))
    conv.bias.data.copy_(torch.from_numpy(bias))
    return conv


def _pool(part: dict) -> nn.Module:
    """dlib's pools: a window clipped to the image where padding reaches outside it."""
    if part["kind"] == "max_pool":
        return nn.MaxPool2d(part["size"], part["stride"], part["padding"])
    return nn.AvgPool2d(part["size"], part["stride"], part["padding"], count_include_pad=False)
