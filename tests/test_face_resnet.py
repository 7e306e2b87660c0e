"""dlib's face recognition ResNet in torch (training/face_resnet.py) against dlib's own descriptors."""
from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import torch
import torch.nn.functional as F

from annotator.training.face_resnet import model_path, read_face_resnet
from annotator.training.fit import new_network
from conftest import PHOTOS


def face_chips(data: Path) -> list[np.ndarray]:
    """dlib's 150 px chips of the faces its HOG detector finds in the test photos (7 faces)."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path().parent / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for stem in PHOTOS:
        rgb = dlib.load_rgb_image(str(data / "300w" / "afw" / f"{stem}.jpg"))
        chips += [dlib.get_face_chip(rgb, predictor(rgb, box), size=150, padding=0.25) for box in detector(rgb, 0)]
    return chips


def batch(chips: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()


def test_descriptors_are_dlibs(data):
    chips = face_chips(data)
    assert len(chips) >= 3
    recognizer = dlib.face_recognition_model_v1(str(model_path()))
    theirs = np.array([recognizer.compute_face_descriptor(chip) for chip in chips])
    with torch.no_grad():
        ours = read_face_resnet()(batch(chips)).numpy()
    assert ours.shape == (len(chips), 128)
    assert np.abs(ours - theirs).max() < 1e-3  # measured: under 1e-6


def test_trunks_end_at_the_documented_strides_and_share_the_models_weights():
    model = read_face_resnet()
    x = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        shapes = {level: tuple(model.trunk(level)(x).shape[1:]) for level in ("alevel4", "alevel3", "alevel2")}
        assert shapes == {"alevel4": (32, 35, 35), "alevel3": (64, 17, 17), "alevel2": (128, 8, 8)}
        assert torch.equal(model.fc(model.trunk("alevel0")(x).mean((2, 3))), model(x))
    assert model.trunk("alevel3")[1] is model.body.stem


def test_gridface_starts_from_dlibs_trunk(data):
    """A new gridface stage (fit's new_network) has dlib's first convolution adapted to its own input: on a
    real face, BGR normalised with the training crops' statistics, it gives what dlib's gives on the RGB face
    normalised dlib's way (away from the border, where the padding differs); its later levels are dlib's."""
    chips = np.stack(face_chips(data)[:2])[:, 11:139, 11:139]  # 128 px, RGB
    bgr = np.ascontiguousarray(chips[..., ::-1])
    targets = np.random.default_rng(0).uniform(0.2, 0.8, (len(chips), 68, 2))
    net = new_network({"crops": bgr, "targets": targets, "size": 128}, "gridface", 16, "shape", 1, pretrained=True)
    model = read_face_resnet()
    stem = model.body.stem[0]
    with torch.no_grad():
        ours = net.features.down8.stem[0]((batch(bgr) - net.mean) / net.std)
        theirs = F.conv2d(model.body.normalise(batch(chips)), stem.weight, stem.bias, 2, 3)
        assert ours.shape == theirs.shape == (2, 32, 64, 64)
        assert (ours - theirs)[..., 2:-2, 2:-2].abs().max() < 1e-4
        assert theirs.abs().max() > 1  # not trivially small
        assert torch.equal(net.features.down16[0].block[0].weight, model.body.alevel2[0].block[0].weight)

        x = batch(bgr)
        fresh = new_network({"crops": bgr, "targets": targets, "size": 128}, "gridface", 16, "shape", 1)
        alevel3 = [n.features.down8((x - n.mean) / n.std) for n in (net, fresh)]
        assert alevel3[0].shape == (2, 64, 16, 16) and not torch.allclose(*alevel3, atol=0.1)
