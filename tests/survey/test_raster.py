"""Scene reads: formats and band counts, thermal companions, georeference, bad files."""

import warnings

import numpy as np
import pytest
from fixtures_data import pattern, write_raster
from rasterio.transform import Affine

from tgmatl.errors import InputError
from tgmatl.survey.raster import SceneReader, find_thermal, read_png, scene_info, write_png


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
@pytest.mark.parametrize("bands", [1, 3])
def test_plain_scenes_read_without_warnings(tmp_path, suffix, bands):
    arr = pattern(40, 60, bands)
    path = write_raster(tmp_path / f"s{suffix}", arr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NotGeoreferencedWarning is expected and muted
        info = scene_info(path)
        with SceneReader(info) as r:
            img, thermal = r.read(0, 0, 60, 40)
    assert (info.width, info.height, info.count, info.image_bands) == (60, 40, bands, bands)
    assert info.transform is None and info.crs is None and not info.has_thermal
    assert thermal is None and img.shape == (bands, 40, 60)
    if suffix != ".jpg":  # lossless
        np.testing.assert_array_equal(img, arr)


def test_geotiff_keeps_transform_and_crs_and_windows_translate_it(tmp_path):
    t = Affine(0.1, 0, 300000.0, 0, -0.1, 5000000.0)
    path = write_raster(tmp_path / "g.tif", pattern(50, 80, 3), transform=t, crs="EPSG:32633")
    info = scene_info(path)
    assert info.crs == "EPSG:32633"
    assert info.transform == pytest.approx(tuple(t)[:6])
    got = info.window_transform(30, 20)
    assert got == pytest.approx(tuple(t @ Affine.translation(30, 20))[:6])
    assert got[2] == pytest.approx(300003.0) and got[5] == pytest.approx(4999998.0)


def test_four_band_scene_splits_rgb_and_thermal(tmp_path):
    arr = pattern(30, 40, 4)
    info = scene_info(write_raster(tmp_path / "s.tif", arr))
    assert info.image_bands == 3 and info.has_thermal and info.thermal_path is None
    with SceneReader(info) as r:
        img, thermal = r.read(10, 5, 20, 10)
    np.testing.assert_array_equal(img, arr[:3, 5:15, 10:30])
    np.testing.assert_array_equal(thermal, arr[3, 5:15, 10:30])


def test_thermal_file_beside_the_scene(tmp_path):
    img = write_raster(tmp_path / "s.jpg", pattern(30, 40, 3))
    therm = pattern(30, 40, 1, offset=9)[0].astype(np.uint16) * 200
    write_raster(tmp_path / "s_thermal.tif", therm)
    assert find_thermal(img) == tmp_path / "s_thermal.tif"
    info = scene_info(img, find_thermal(img))
    assert info.thermal_dtype == "uint16"
    with SceneReader(info) as r:
        _, thermal = r.read(0, 0, 40, 30)
    np.testing.assert_array_equal(thermal, therm)


def test_thermal_size_mismatch_names_both_files(tmp_path):
    img = write_raster(tmp_path / "s.png", pattern(30, 40, 3))
    write_raster(tmp_path / "s_thermal.png", pattern(30, 41, 1))
    with pytest.raises(InputError, match=r"s_thermal\.png.*41x30.*s\.png.*40x30"):
        scene_info(img, find_thermal(img))


def test_two_thermal_files_are_ambiguous(tmp_path):
    img = write_raster(tmp_path / "s.png", pattern(30, 40, 3))
    write_raster(tmp_path / "s_thermal.png", pattern(30, 40, 1))
    write_raster(tmp_path / "s_thermal.tif", pattern(30, 40, 1))
    with pytest.raises(InputError, match="more than one thermal file"):
        find_thermal(img)


def test_window_past_the_border_is_zero_padded(tmp_path):
    arr = pattern(30, 40, 3)
    info = scene_info(write_raster(tmp_path / "s.png", arr))
    with SceneReader(info) as r:
        img, _ = r.read(30, 20, 16, 16)
    np.testing.assert_array_equal(img[:, :10, :10], arr[:, 20:30, 30:40])
    assert not img[:, 10:, :].any() and not img[:, :, 10:].any()


@pytest.mark.parametrize(
    "content, why",
    [(b"", "does not open"), (b"certainly not an image" * 10, "does not open")],
)
def test_files_that_do_not_open_name_the_file(tmp_path, content, why):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"bad\.jpg: image {why}"):
        scene_info(path)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_truncated_images_do_not_decode_and_name_the_file(tmp_path, suffix):
    rng = np.random.default_rng(0)  # noise: large, so a cut loses pixel data, not only a trailer
    path = write_raster(tmp_path / f"cut{suffix}", rng.integers(0, 256, (3, 64, 64), np.uint8))
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(InputError, match=rf"cut\{suffix}: image does not decode"):
        info = scene_info(path)
        with SceneReader(info) as r:
            r.read(0, 0, 64, 64)


def test_unsupported_band_counts_and_dtypes(tmp_path):
    with pytest.raises(InputError, match="2 bands"):
        scene_info(write_raster(tmp_path / "two.tif", pattern(10, 10, 2)))
    with pytest.raises(InputError, match="expected 8-bit"):
        scene_info(write_raster(tmp_path / "u16.tif", pattern(10, 10, 3).astype(np.uint16)))


@pytest.mark.parametrize("shape, dtype", [((3, 7, 9), np.uint8), ((1, 7, 9), np.uint8),
                                          ((1, 7, 9), np.uint16)])
def test_png_round_trip(tmp_path, shape, dtype):
    arr = (np.arange(np.prod(shape)).reshape(shape) * 37 % 60000).astype(dtype)
    write_png(tmp_path / "x.png", arr)
    back = read_png(tmp_path / "x.png")
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, arr)
