"""Hostile images through the tools and the CLI: bombs and huge declared sizes in several formats, damaged files.

Each answer must be one clear ``bad_input`` (CLI: one line, exit 2), never ``internal`` or a traceback.
"""

from __future__ import annotations

import base64
import io
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from addp_agent.cli import main
from addp_agent.errors import UserError
from addp_agent.images import MAX_PIXELS, WORKING_MAX_SIDE, load_image_bytes
from addp_agent.masks import bbox_xywh
from addp_agent.tools.functions import SegmentationTools
from addp_agent.tools.inputs import ImagePolicy

pytestmark = pytest.mark.usefixtures("one_thread")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header declares ``width``×``height`` RGB pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + _chunk(b"IEND", b""))


def gif_declaring(width: int, height: int) -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00;"
    return screen + frame


def bmp_declaring(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\0" * 16


def tiff_declaring(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    return b"II*\0" + struct.pack("<I", 8 + 16) + b"\0" * 16 + ifd


def jpeg_declaring(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMBS = {
    "decompression_bomb_png": png_declaring(20_000, 20_000),  # PIL raises DecompressionBombError in Image.open
    "decompression_bomb_warning_png": png_declaring(10_000, 10_000),  # PIL only warns (89–179 MP)
    "png_over_the_cap": png_declaring(7_000, 7_000),  # PIL accepts it; 49 MP is over our 40 MP cap
    "gif_declaring_65535_square": gif_declaring(65_535, 65_535),
    "bmp_declaring_60000_square": bmp_declaring(60_000, 60_000),
    "tiff_declaring_100000_square": tiff_declaring(100_000, 100_000),
    "jpeg_declaring_65000_square": jpeg_declaring(65_000, 65_000),
}
DAMAGED = {
    "truncated_png": png_declaring(64, 64),
    "png_signature_only": b"\x89PNG\r\n\x1a\n",
    "random_bytes": np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
    "zero_by_zero_bmp": bmp_declaring(0, 0),
}


@pytest.fixture(scope="module")
def tools(pipe):
    return SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([]))


@pytest.mark.parametrize("name", BOMBS)
def test_decompression_bombs_and_huge_declared_sizes_are_bad_input(tools, name, caplog, recwarn):
    """test_decompression_bomb_png_is_bad_input and its relatives in GIF, BMP, TIFF and JPEG."""
    data = BOMBS[name]
    assert len(data) < 2000  # tiny files declaring billions of pixels
    with caplog.at_level(logging.DEBUG):
        out = tools.call("segment", {"image": "data:image/png;base64," + base64.b64encode(data).decode(),
                                     "expression": "the cup"})
    assert out.is_error and out.result.error == "bad_input", out.text()
    assert "MP cap" in out.result.message and "\n" not in out.result.message
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_images_are_bad_input(tools, name):
    out = tools.call("segment", {"image": "data:image/png;base64," + base64.b64encode(DAMAGED[name]).decode(),
                                 "expression": "the cup"})
    assert out.is_error and out.result.error == "bad_input", out.text()


def test_decompression_bomb_png_cli_is_one_line_exit_2(tmp_path, tiny_pixel_dir, capsys):
    """`addp segment bomb.png …` (in process; test_cli_segment runs the real process for the same path)."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(BOMBS["decompression_bomb_png"])
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(bomb), "the cup", "--model", str(tiny_pixel_dir), "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert stderr.count("\n") == 1 and "400000000 pixels" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_pil_limits_are_left_as_they_were():
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(UserError):
        load_image_bytes(BOMBS["decompression_bomb_warning_png"])
    assert before == Image.MAX_IMAGE_PIXELS
    with pytest.warns(Image.DecompressionBombWarning):  # other code in the process still gets PIL's warning
        Image.open(io.BytesIO(BOMBS["decompression_bomb_warning_png"]))


def test_large_image_session_keeps_a_bounded_copy_and_answers_at_input_size(tools, red_pipe):
    """A 4000×3000 photo: the session keeps ≤ WORKING_MAX_SIDE px; masks still come back at 4000×3000."""
    height, width = 3000, 4000
    assert height * width <= MAX_PIXELS
    yy, xx = np.mgrid[0:height, 0:width]
    photo = np.stack([xx * 255 // width, yy * 255 // height, (xx // 97 + yy // 89) % 2 * 200], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=80)
    red = SegmentationTools(pipeline=red_pipe)
    out = red.call("segment", {"image": base64.b64encode(buffer.getvalue()).decode(), "expression": "the left half",
                               "steps": 2})
    assert not out.is_error, out.text()
    assert (out.result.width, out.result.height) == (width, height)
    assert out.artifact["mask"].shape == (height, width) and out.result.area_percent > 0
    assert out.result.bbox == bbox_xywh(out.artifact["mask"]) and out.result.bbox[2] > WORKING_MAX_SIDE
    session, _ = red.store.lookup(out.result.mask_id)
    assert max(session.image.shape[:2]) == WORKING_MAX_SIDE and session.input_size == (height, width)
    assert session.rounds[0].mask.shape == session.image.shape[:2]
    kept = session.image.nbytes + sum(r.mask.nbytes + sum(p.mask.nbytes for p in r.trajectory or [])
                                      for r in session.rounds)
    assert kept < 8 * 2**20, kept  # the full input alone is 36 MB, each full-size mask 12 MB
    mask = red.call("get_mask", {"mask_id": out.result.mask_id}).artifact["mask"]
    assert mask.shape == (height, width) and np.array_equal(mask, out.artifact["mask"])
    trajectory = red.call("trajectory", {"mask_id": out.result.mask_id}).artifact["masks"]
    assert trajectory and all(m.shape == (height, width) for m in trajectory)
    assert len(out.overlay_png) <= 256 * 1024


@pytest.mark.parametrize(("orientation", "transpose"), [(1, None), (3, Image.Transpose.ROTATE_180),
                                                         (6, Image.Transpose.ROTATE_270),
                                                         (8, Image.Transpose.ROTATE_90)])
def test_exif_orientation_is_applied_as_viewers_show_the_photo(tmp_path, orientation, transpose):
    """A phone photo stored sideways with an EXIF orientation tag is read upright (masks come back in that frame);
    the gt-mask reader turns its file the same way."""
    from addp_agent.images import load_image, load_mask

    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:5, :5] = (255, 0, 0)  # a red corner to follow
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    upright = Image.fromarray(stored) if transpose is None else Image.fromarray(stored).transpose(transpose)
    loaded = load_image(path)
    assert loaded.shape == np.asarray(upright).shape and np.array_equal(loaded, np.asarray(upright))
    assert load_mask(path).shape == loaded.shape[:2]
