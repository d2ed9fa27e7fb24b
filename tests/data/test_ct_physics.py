"""CT-projected radiographs, physics: line integrals, HU → attenuation, the film curve."""
import numpy as np
import pytest

from cxr_keras.data.ct import physics


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.5, 0.5)])
def test_sphere_line_integral(spacing):
    """A sphere of μ and radius r: 2rμ through its centre, the chord length off-centre, 0 outside."""
    mu, r = 0.03, 24.0  # 1/mm, mm
    shape = (64, 64, int(round(64 / spacing[2])))
    grids = np.meshgrid(*[(np.arange(n) + 0.5) * s - 32.0 for n, s in zip(shape, spacing)], indexing="ij")
    vol = np.where(sum(g ** 2 for g in grids) <= r * r, mu, 0.0).astype(np.float32)
    L = physics.project_ap(vol, spacing)
    assert L.shape == shape[:2]
    rows = (np.arange(shape[0]) + 0.5) * spacing[0] - 32.0
    cols = (np.arange(shape[1]) + 0.5) * spacing[1] - 32.0
    i, j = np.argmin(np.abs(rows)), np.argmin(np.abs(cols))
    tol = 2 * mu * spacing[2] + 0.02 * 2 * r * mu
    assert L[i, j] == pytest.approx(2 * r * mu * np.sqrt(1 - (rows[i] ** 2 + cols[j] ** 2) / r ** 2), abs=tol)
    a = 15.0  # chord at distance a from the centre: 2·sqrt(r² − a²)·μ
    k = np.argmin(np.abs(cols - a))
    expected = 2 * np.sqrt(r * r - rows[i] ** 2 - cols[k] ** 2) * mu
    assert L[i, k] == pytest.approx(expected, abs=tol)
    R, C = np.meshgrid(rows, cols, indexing="ij")
    outside = R ** 2 + C ** 2 > (r + 1e-3) ** 2
    assert np.all(L[outside] == 0.0)
    assert L.max() <= 2 * r * mu + tol


def test_project_ap_rejects_2d():
    with pytest.raises(ValueError, match="3-D"):
        physics.project_ap(np.zeros((4, 4)), 1.0)


def test_hu_to_mu_calibration():
    mu = physics.hu_to_mu(np.array([-1000.0, -2000.0, 0.0, 1000.0]), mu_water=0.02, bone_scale=1.5)
    assert mu[0] == 0.0 and mu[1] == 0.0  # air (and below) do not attenuate
    assert mu[2] == pytest.approx(0.02)
    assert mu[3] == pytest.approx(0.02 * 2.5)  # bone emphasised beyond the linear HU scale
    lung = physics.hu_to_mu(-850.0, mu_water=0.02)
    assert lung == pytest.approx(0.003, rel=1e-4)


def test_film_curve_is_a_negative():
    L = np.linspace(0.0, 6.0, 50, dtype=np.float32)[None, :]
    img = physics.drr_to_uint8(L, dark=2.0, bright=4.0)
    assert img.dtype == np.uint8
    assert np.all(np.diff(img[0].astype(int)) >= 0)  # more attenuation → brighter
    assert img[0, 0] < 10 and img[0, -1] > 245  # air is black, dense is white
    y = physics.film_curve(np.array([2.0, 4.0]), 2.0, 4.0)
    assert y == pytest.approx([0.15, 0.85], abs=1e-5)
    with pytest.raises(ValueError, match="must exceed"):
        physics.film_curve(L, 3.0, 3.0)
    with pytest.raises(ValueError, match="rng"):
        physics.drr_to_uint8(L, 2.0, 4.0, noise=0.1)
