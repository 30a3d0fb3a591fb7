"""PLY save/load: full round trip, the standard 3DGS layout viewers rely on, plain 3DGS
files from other tools and clear errors for files that are not Gaussian PLYs."""
import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from gs4_ros.core.gaussian_map import INT_FIELDS, GaussianMap
from gs4_ros.io.ply import C0, load_ply, read_class_names, save_ply

STANDARD = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(45)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def assert_maps_equal(a: GaussianMap, b: GaussianMap):
    assert (a.num_classes, a.feature_dim, len(a)) == (b.num_classes, b.feature_dim, len(b))
    for name, ta in a.state().items():
        tb = getattr(b, name)
        assert ta.dtype == tb.dtype and ta.shape == tb.shape, name
        if name == "colors":  # one float32 rounding through the SH conversion
            torch.testing.assert_close(ta, tb, rtol=0, atol=1e-6)
        else:
            assert torch.equal(ta, tb), name


def test_round_trip_every_field(tmp_path, random_map):
    gm = random_map(n=37, num_classes=20, feature_dim=8)
    gm.frozen[:3] = True  # frozen is stored as a flag, not recomputed from update_count
    p = save_ply(tmp_path / "sub" / "map.ply", gm)
    back = load_ply(p)
    assert_maps_equal(gm, back)
    assert read_class_names(p) is None and back.class_names is None


def test_round_trip_other_sizes_and_empty(tmp_path, random_map):
    gm = random_map(n=5, num_classes=3, feature_dim=0)
    assert_maps_equal(gm, load_ply(save_ply(tmp_path / "a.ply", gm)))
    gm = random_map(n=4, num_classes=0, feature_dim=2)
    assert_maps_equal(gm, load_ply(save_ply(tmp_path / "b.ply", gm)))
    empty = GaussianMap(num_classes=20, feature_dim=4)
    assert_maps_equal(empty, load_ply(save_ply(tmp_path / "c.ply", empty)))


def test_standard_layout_and_encodings(tmp_path, random_map):
    gm = random_map(n=10, num_classes=4, feature_dim=2)
    p = save_ply(tmp_path / "m.ply", gm, class_names=["wall", "floor", "chair", "tv stand"])
    v = PlyData.read(str(p))["vertex"]
    names = [pr.name for pr in v.properties]
    assert names[: len(STANDARD)] == STANDARD  # viewers expect this prefix in this order
    assert names[len(STANDARD):] == (["label", "sem_0", "sem_1", "sem_2", "sem_3", "feat_0", "feat_1",
                                      "track_color_0", "track_color_1", "track_color_2", "obs_weight"]
                                     + list(INT_FIELDS) + ["frozen"])
    assert {"update_count", "birth_frame", "keyframe_id"} <= set(INT_FIELDS)
    d = v.data
    for n in STANDARD:
        assert d.dtype[n] == np.float32, n
    assert d.dtype["label"] == np.uint8 and d.dtype["frozen"] == np.uint8
    assert d.dtype["keyframe_id"] == np.int32
    np.testing.assert_allclose(d["f_dc_1"], (gm.colors[:, 1].numpy() - 0.5) / C0, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(d["opacity"], gm.opacity_logits.numpy())
    np.testing.assert_array_equal(d["scale_2"], gm.log_scales[:, 2].numpy())
    np.testing.assert_array_equal(d["rot_0"], gm.quats[:, 0].numpy())  # w first
    np.testing.assert_array_equal(d["label"], gm.sem_logits.argmax(-1).numpy())
    assert not d["nx"].any() and not d["f_rest_44"].any()
    assert read_class_names(p) == ["wall", "floor", "chair", "tv stand"]
    back = load_ply(p)
    assert back.class_names == ["wall", "floor", "chair", "tv stand"]
    # A loaded map saved again without names (gs4 query --out) keeps what its logits mean.
    assert read_class_names(save_ply(tmp_path / "again.ply", back)) == back.class_names


def test_a_map_of_other_classes_is_refused_not_misread(tmp_path, random_map):
    """Same class count, another list: loading it into a node of these classes would read
    every logit as another class, so it is an error; the same names, or a file that
    records none, load."""
    gm = random_map(n=5, num_classes=3)
    p = save_ply(tmp_path / "m.ply", gm, class_names=["wall", "floor", "chair"])
    with pytest.raises(ValueError, match="saved with classes"):
        load_ply(p, num_classes=3, class_names=["floor", "wall", "chair"])
    back = load_ply(p, num_classes=3, class_names=("wall", "floor", "chair"))
    assert torch.equal(back.sem_logits, gm.sem_logits)
    bare = save_ply(tmp_path / "bare.ply", gm)
    assert read_class_names(bare) is None
    assert len(load_ply(bare, num_classes=3, class_names=["x", "y", "z"])) == 5


def test_bare_layout_for_the_inria_viewer(tmp_path, random_map):
    """SIBR reads line 3 as `element vertex N` and then N fixed 62-float records."""
    gm = random_map(n=7)
    p = save_ply(tmp_path / "bare.ply", gm, class_names=["a"] * 20, extras=False)
    raw = p.read_bytes()
    head, body = raw.split(b"end_header\n", 1)
    lines = head.decode().splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 7"]
    assert len(body) == 7 * 62 * 4
    rec = np.frombuffer(body, np.float32).reshape(7, 62)
    np.testing.assert_array_equal(rec[:, :3], gm.means.numpy())
    np.testing.assert_array_equal(rec[:, 58:62], gm.quats.numpy())
    back = load_ply(p)  # still loads, with default book-keeping
    torch.testing.assert_close(back.colors, gm.colors, rtol=0, atol=1e-6)
    assert back.num_classes == 0 and back.feature_dim == 0
    assert (back.keyframe_id == -1).all()


def test_no_sh_rest_option(tmp_path, random_map):
    gm = random_map(n=3)
    p = save_ply(tmp_path / "m.ply", gm, sh_rest=False)
    names = [pr.name for pr in PlyData.read(str(p))["vertex"].properties]
    assert not any(n.startswith("f_rest") for n in names)
    assert_maps_equal(gm, load_ply(p))


def _plain_3dgs(path, n=6, text=False, dtype="f4", sh=True, drop=()):
    rng = np.random.default_rng(1)
    names = [n_ for n_ in STANDARD if (sh or not n_.startswith("f_rest")) and n_ not in drop]
    arr = np.empty(n, dtype=[(k, dtype) for k in names])
    for k in names:
        arr[k] = rng.normal(size=n)
    PlyData([PlyElement.describe(arr, "vertex")], text=text).write(str(path))
    return arr


@pytest.mark.parametrize("text,dtype", [(False, "f4"), (True, "f8")])
def test_loads_plain_3dgs_files(tmp_path, text, dtype):
    arr = _plain_3dgs(tmp_path / "p.ply", text=text, dtype=dtype)
    gm = load_ply(tmp_path / "p.ply")
    assert len(gm) == 6 and gm.num_classes == 0 and gm.feature_dim == 0
    np.testing.assert_allclose(gm.means.numpy(), np.stack([arr["x"], arr["y"], arr["z"]], -1), rtol=1e-6)
    np.testing.assert_allclose(gm.colors[:, 0].numpy(), arr["f_dc_0"] * C0 + 0.5, rtol=1e-6)
    np.testing.assert_allclose(gm.opacity_logits.numpy(), arr["opacity"], rtol=1e-6)
    assert gm.means.dtype == torch.float32 and gm.update_count.dtype == torch.int32
    assert not gm.frozen.any() and (gm.update_count == 0).all()
    gm20 = load_ply(tmp_path / "p.ply", num_classes=20)
    assert gm20.sem_logits.shape == (6, 20) and not gm20.sem_logits.any()
    assert gm20.params(with_semantics=True).sem_probs.shape == (6, 20)


def test_errors(tmp_path, random_map):
    with pytest.raises(FileNotFoundError):
        load_ply(tmp_path / "nope.ply")
    (tmp_path / "junk.ply").write_bytes(b"this is not a ply file\n" * 10)
    with pytest.raises(ValueError, match="not a readable PLY"):
        load_ply(tmp_path / "junk.ply")
    _plain_3dgs(tmp_path / "noop.ply", drop=("opacity", "rot_3"))
    with pytest.raises(ValueError, match=r"missing vertex fields \['opacity', 'rot_3'\]"):
        load_ply(tmp_path / "noop.ply")
    face = np.zeros(2, dtype=[("a", "f4")])
    PlyData([PlyElement.describe(face, "face")]).write(str(tmp_path / "face.ply"))
    with pytest.raises(ValueError, match="no 'vertex' element"):
        load_ply(tmp_path / "face.ply")
    p = save_ply(tmp_path / "m.ply", random_map(n=3, num_classes=5))
    with pytest.raises(ValueError, match="5 semantic classes"):
        load_ply(p, num_classes=20)
    with pytest.raises(ValueError, match="class names"):
        save_ply(tmp_path / "x.ply", random_map(n=3, num_classes=5), class_names=["a", "b"])
