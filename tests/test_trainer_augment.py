"""trainer.augment: batched affine augmentation and erasing, checked against torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from space.spec import Augment
from trainer.augment import affine_matrices, augment
from trainer.data import load_train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_train(ROOT / "data").x[:64].float()  # (64, 1, 28, 28) on the 0..255 scale


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_all_zero_strengths_return_the_input_itself(digits):
    assert augment(digits, Augment(), _gen()) is digits
    u8 = digits.to(torch.uint8)
    assert augment(u8, Augment(), _gen()) is u8


@pytest.mark.parametrize("aug", [
    Augment(rotate=30), Augment(translate=0.2), Augment(scale=0.3), Augment(shear=20),
    Augment(crop_p=0.5, crop_size=20), Augment(erase_p=0.7),
    Augment(rotate=15, translate=0.1, scale=0.1, shear=10, crop_p=0.1, erase_p=0.2),
], ids=["rotate", "translate", "scale", "shear", "crop", "erase", "all"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_each_augmentation_keeps_shape_dtype_and_range_and_changes_the_images(digits, aug, dtype):
    x = digits.to(dtype)
    out = augment(x, aug, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.float().min() >= -1e-3 and out.float().max() <= 255 + 1e-3
    assert not torch.equal(out, x)
    assert torch.equal(out, augment(x, aug, _gen()))          # the same generator state, the same batch
    assert not torch.equal(out, augment(x, aug, _gen(1)))


def _rotated(digits: torch.Tensor, aug: Augment, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``augment`` of the digits, and the angle in degrees that each image was turned by (the same draws)."""
    out = augment(digits, aug, _gen(seed))
    theta = affine_matrices(len(digits), aug, 28, 28, generator=_gen(seed))
    assert theta is not None
    return out, torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))  # inverse map [[c, -s], [s, c]]


def test_rotation_matches_torchvision_rotate_of_the_same_images(digits):
    """Each image turned by its own random angle equals torchvision's rotate by that angle (bilinear)."""
    out, angles = _rotated(digits, Augment(rotate=40), 7)
    assert angles.abs().max() <= 40 and angles.abs().max() > 30 and (angles < 0).any()
    ref = torch.stack([TF.rotate(img, float(a), interpolation=InterpolationMode.BILINEAR)
                       for img, a in zip(digits, angles, strict=True)])
    err = (out - ref).abs()
    assert err.mean() < 0.05 and err.max() < 2.0  # pixels on a 0..255 scale: interpolation rounding only
    # and it is a real rotation: the sign matters
    wrong = torch.stack([TF.rotate(img, -float(a), interpolation=InterpolationMode.BILINEAR)
                         for img, a in zip(digits, angles, strict=True)])
    assert (out - wrong).abs().mean() > 5


def test_nearest_rotation_matches_torchvision_nearest_rotate_and_invents_no_pixel_values(digits):
    """interp: nearest is torchvision's RandomRotation default: every output pixel is an input pixel or 0."""
    out, angles = _rotated(digits, Augment(rotate=40, interp="nearest"), 7)
    ref = torch.stack([TF.rotate(img, float(a), interpolation=InterpolationMode.NEAREST)
                       for img, a in zip(digits, angles, strict=True)])
    assert (out != ref).float().mean() < 0.005  # only pixel centres that fall on a rounding boundary differ
    for img, src in zip(out, digits, strict=True):
        assert torch.isin(img.unique(), torch.cat([src.unique(), torch.zeros(1)])).all()
    smooth = augment(digits, Augment(rotate=40), _gen(7))  # the same angles, bilinear: new in-between values
    assert not torch.isin(smooth[0].unique(), torch.cat([digits[0].unique(), torch.zeros(1)])).all()


def _pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(img[0].to(torch.uint8).numpy(), mode="L")


def _from_pil(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).float()[None]  # (1, H, W)


def test_nearest_rotation_is_the_reference_pipelines_pil_rotation(digits):
    """The reference rotates PIL images (RandomRotation: nearest, fill 0); ours matches it pixel for pixel."""
    out, angles = _rotated(digits, Augment(rotate=15, interp="nearest"), 3)
    ref = torch.stack([_from_pil(TF.rotate(_pil(img), float(a), interpolation=InterpolationMode.NEAREST, fill=0))
                       for img, a in zip(digits, angles, strict=True)])
    assert (out != ref).float().mean() < 1e-3


def test_bilinear_crop_is_the_reference_pipelines_pil_crop_and_resize(digits):
    """CenterCrop(22) then Resize((28, 28)) on PIL images, as the reference does, against our zoom."""
    out = augment(digits, Augment(crop_p=1.0, crop_size=22), _gen())
    tf = T.Compose([T.CenterCrop(22), T.Resize((28, 28))])
    ref = torch.stack([_from_pil(tf(_pil(img))) for img in digits])
    err = (out - ref).abs()
    assert err.mean() < 0.5  # grey levels of 255: PIL rounds to bytes, and its bilinear differs at the edges


def test_nearest_crop_and_rotation_is_the_reference_pipelines_pil_crop_resize_then_rotation(digits):
    """interp: nearest rotates nearest-pixel, but the crop is still resized bilinearly first, as the reference's
    CenterCrop(22) + Resize((28, 28)) + RandomRotation(15) on PIL images."""
    aug = Augment(rotate=15, crop_p=0.5, crop_size=22, interp="nearest")
    out = augment(digits, aug, _gen(5))
    theta = affine_matrices(len(digits), aug, 28, 28, generator=_gen(5))
    assert theta is not None
    cropped = theta[:, 0, 0].pow(2).add(theta[:, 1, 0].pow(2)).sqrt() < 0.9  # zoom 22/28 in the inverse map
    assert 15 < cropped.sum() < 50
    angles = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    ref = []
    for img, a, c in zip(digits, angles, cropped, strict=True):
        pil = T.Resize((28, 28))(T.CenterCrop(22)(_pil(img))) if c else _pil(img)
        ref.append(_from_pil(TF.rotate(pil, float(a), interpolation=InterpolationMode.NEAREST, fill=0)))
    err = (out - torch.stack(ref)).abs()
    assert (err[~cropped] > 0).float().mean() < 1e-3  # as the rotation test
    assert err[cropped].mean() < 0.5  # PIL rounds its resize to bytes and clamps at the crop's edge
    # against one nearest resampling of crop and rotation together: blocky zoom, far from the reference
    one_pass = F.grid_sample(digits, F.affine_grid(theta, list(digits.shape), align_corners=False), mode="nearest",
                             padding_mode="zeros", align_corners=False)
    assert (one_pass - torch.stack(ref)).abs()[cropped].mean() > 3 * err[cropped].mean()


def test_the_crop_is_the_reference_centre_crop_resized_back(digits):
    out = augment(digits, Augment(crop_p=1.0, crop_size=22), _gen())
    ref = TF.resize(TF.center_crop(digits, [22, 22]), [28, 28], interpolation=InterpolationMode.BILINEAR,
                    antialias=False)
    inner = (slice(None), slice(None), slice(2, 26), slice(2, 26))  # borders differ: zero fill vs edge clamp
    assert (out - ref)[inner].abs().max() < 0.01
    assert (out - ref).abs().mean() < 0.2


def test_translation_by_a_fraction_of_the_side_moves_the_centre_of_mass(digits):
    out = augment(digits, Augment(translate=0.1), _gen(3))
    theta = affine_matrices(len(digits), Augment(translate=0.1), 28, 28, generator=_gen(3))
    assert theta is not None
    shift_px = -theta[:, :, 2] * 14                       # (B, 2) forward shift in pixels, x then y
    assert shift_px.abs().max() <= 2.8 + 1e-5
    grid = torch.arange(28.0)

    def centre(x: torch.Tensor) -> torch.Tensor:  # (B, 2) centre of mass, x then y
        m = x[:, 0]
        return torch.stack([(m.sum(1) * grid).sum(1), (m.sum(2) * grid).sum(1)], 1) / m.sum((1, 2))[:, None]

    err = (centre(out) - centre(digits) - shift_px).abs()  # (B, 2)
    assert err.median() < 0.05 and err.max() < 1.0  # a digit near the edge may lose some ink off the side


def test_erasing_zeroes_one_rectangle_of_the_documented_size():
    x = torch.full((256, 1, 28, 28), 255.0)
    out = augment(x, Augment(erase_p=1.0), _gen())
    zero = out[:, 0] == 0                                  # (B, H, W)
    rows, cols = zero.any(2), zero.any(1)                 # (B, H), (B, W)
    area = zero.sum((1, 2)).float()
    assert torch.equal(area, rows.sum(1).float() * cols.sum(1).float())  # a rectangle
    assert area.min() >= 1 and (area / 784).max() <= 0.40 and (area / 784).mean() > 0.05
    assert torch.equal(augment(x, Augment(erase_p=0.5), _gen())[:, 0].eq(0).any((1, 2)).float().mean()
                       .round(decimals=1), torch.tensor(0.5))


def test_the_whole_batch_is_one_grid_sample(digits, monkeypatch):
    calls = []
    real = F.grid_sample

    def counting(*a, **k):
        calls.append(a[0].shape)
        return real(*a, **k)

    monkeypatch.setattr(F, "grid_sample", counting)
    augment(digits, Augment(rotate=15, translate=0.1, scale=0.1, shear=5, crop_p=0.1), _gen())
    assert calls == [digits.shape]
    calls.clear()
    augment(digits, Augment(erase_p=0.5), _gen())  # erasing alone resamples nothing
    assert calls == []


def test_the_identity_matrix_when_every_strength_is_at_its_zero_draw():
    """A 0-degree, 0-shift, scale-1 transform is exactly the identity (no half-pixel offset)."""
    theta = affine_matrices(4, Augment(rotate=1e-9, scale=1e-9), 28, 28, generator=_gen())
    assert theta is not None
    assert torch.allclose(theta, torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(4, 2, 3), atol=1e-6)
    assert affine_matrices(4, Augment(erase_p=0.5), 28, 28) is None


def test_rotation_of_non_square_images_matches_torchvision_too():
    x = torch.zeros(8, 1, 20, 32)
    x[:, :, 6:14, 10:22] = 200.0  # a bar: its corners show any distortion of the angles
    out = augment(x, Augment(rotate=30), _gen(2))
    theta = affine_matrices(8, Augment(rotate=30), 20, 32, generator=_gen(2))
    assert theta is not None
    angles = torch.rad2deg(torch.atan2(theta[:, 1, 0] * 20 / 32, theta[:, 0, 0]))  # undo D^-1 . D
    ref = torch.stack([TF.rotate(img, float(a), interpolation=InterpolationMode.BILINEAR)
                       for img, a in zip(x, angles, strict=True)])
    assert (out - ref).abs().max() < 2.0


@pytest.mark.parametrize("h, w", [(28, 28), (20, 32)])
def test_the_sampling_grid_is_affine_grids(h, w):
    from trainer.augment import _affine_grid

    theta = torch.randn(5, 2, 3, generator=_gen())
    want = F.affine_grid(theta, [5, 1, h, w], align_corners=False)
    assert torch.allclose(_affine_grid(theta, h, w), want, atol=1e-6)
