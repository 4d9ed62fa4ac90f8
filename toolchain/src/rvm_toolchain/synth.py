"""Synthetic intake-camera frames (bottles, cans, other objects) with exact YOLO labels.

No image or data set can be downloaded here, so the lab detector learns from frames this module
draws with OpenCV: an intake chamber background (tray, conveyor belt, brushed metal, tiles), one to
three objects at any angle and scale, some partly out of frame, then the camera's flaws (uneven
light, colour cast, vignetting, sensor noise, blur, JPEG). Labels come from each object's own
rendered mask, so a box is tight around what is actually visible and clipped to the frame.

Everything is a pure function of ``(seed, index)``: frame *i* is the same whatever the count, the
train/val/calibration splits use disjoint index ranges, and the same seed gives the same bytes.
Only numpy and OpenCV are needed, so the runtime's tests can make sample frames too.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES: tuple[str, ...] = ("bottle", "can", "other")
BOTTLE, CAN, OTHER = 0, 1, 2
FRAME_SIZE = (640, 480)  # width, height of a typical USB/CSI intake camera mode
#: index offsets of the splits: disjoint, so no frame of one split is ever a frame of another. "val" is the
#: split the trainer scores every epoch and picks best.pt with (so it took part in selection);
#: "test" is used by nothing but ``rvm-toolchain eval`` after training: the honest accuracy figure.
SPLIT_OFFSETS = {
    "train": 0,
    "val": 1_000_000,
    "calib": 2_000_000,
    "frames": 3_000_000,
    "test": 4_000_000,
}
MIN_VISIBLE = 0.4  # an object is placed only where at least this share of it stays in frame
JPEG_QUALITY = (70, 96)

Rng = np.random.Generator


@dataclass(frozen=True)
class LabeledBox:
    """One object's visible extent in pixels (x2, y2 exclusive) and its class index into CLASSES."""

    cls: int
    x1: float
    y1: float
    x2: float
    y2: float

    def yolo_line(self, width: int, height: int) -> str:
        """``cls cx cy w h`` normalised to the frame, the format ultralytics trains from."""
        cx, cy = (self.x1 + self.x2) / 2 / width, (self.y1 + self.y2) / 2 / height
        w, h = (self.x2 - self.x1) / width, (self.y2 - self.y1) / height
        return f"{self.cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


@dataclass(frozen=True)
class Sample:
    """A rendered frame (BGR, uint8), the labels of the objects in it and their visible pixels.

    ``masks[i]`` is the boolean (H, W) mask of what is visible of ``boxes[i]``: the ground truth the
    labels were derived from (and a reference for mask geometry).
    """

    image: np.ndarray
    boxes: tuple[LabeledBox, ...]
    masks: tuple[np.ndarray, ...] = ()

    def yolo_label(self) -> str:
        h, w = self.image.shape[:2]
        return "".join(b.yolo_line(w, h) + "\n" for b in self.boxes)


# --------------------------------------------------------------------------- colours and shading


def _colour(rng: Rng, palette: list[tuple[int, int, int]], jitter: int = 18) -> np.ndarray:
    base = np.array(palette[int(rng.integers(len(palette)))], dtype=np.float32)
    return np.clip(base + rng.normal(0, jitter, 3), 0, 255).astype(np.float32)


def _cylinder_shade(width: int, rng: Rng, metallic: bool) -> np.ndarray:
    """Brightness across a cylinder (dark edges, highlight off-centre); metal gets sharp speculars."""
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - x**2, 0, 1))
    centre = rng.uniform(-0.6, 0.6)
    sharp = 0.04 if metallic else 0.12
    shade += (0.9 if metallic else 0.5) * np.exp(-((x - centre) ** 2) / sharp)
    if metallic:
        shade += 0.35 * np.exp(-((x + centre * 0.8) ** 2) / 0.02)
    return shade


def _shaded(canvas_h: int, colour: np.ndarray, shade: np.ndarray) -> np.ndarray:
    img = np.ones((canvas_h, shade.shape[0], 3), np.float32) * colour
    return img * shade[None, :, None]


# --------------------------------------------------------------------------- object sprites
# Each sprite function draws one object upright on its own canvas and returns (BGR float, alpha 0..1).
# The long side is ``size`` pixels; the caller rotates, scales and places it.

BOTTLE_BODIES = [
    (205, 225, 225),
    (120, 170, 90),
    (60, 90, 140),
    (235, 235, 235),
    (170, 140, 80),
    (210, 200, 180),
]
CAPS = [(200, 90, 20), (40, 40, 200), (240, 240, 240), (40, 150, 40), (20, 20, 20), (0, 200, 230)]
LABELS = [(30, 30, 200), (200, 60, 30), (40, 180, 240), (30, 140, 30), (230, 230, 230), (120, 30, 120)]
CAN_COLOURS = [
    (40, 40, 190),
    (170, 80, 20),
    (190, 190, 190),
    (40, 130, 40),
    (25, 25, 25),
    (30, 200, 230),
    (150, 40, 140),
    (200, 200, 60),
]
OTHER_COLOURS = [
    (90, 140, 190),
    (200, 200, 200),
    (60, 60, 60),
    (40, 110, 200),
    (160, 120, 90),
    (100, 180, 100),
    (30, 60, 150),
    (220, 210, 160),
]


def _bottle(size: int, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    h = size
    w = max(8, int(h * rng.uniform(0.26, 0.38)))
    neck = max(3, int(w * rng.uniform(0.3, 0.42)))
    cap_h, neck_h = int(h * rng.uniform(0.04, 0.07)), int(h * rng.uniform(0.07, 0.12))
    shoulder = int(h * rng.uniform(0.15, 0.28))
    cx = w / 2
    top = cap_h + neck_h
    pts = [(cx - neck / 2, cap_h), (cx + neck / 2, cap_h), (cx + neck / 2, top)]
    for t in np.linspace(0, 1, 10):  # shoulder curve from neck to full body width
        pts.append((cx + (neck / 2 + (w / 2 - neck / 2) * math.sin(t * math.pi / 2)), top + t * shoulder))
    r = w * 0.18
    pts += [(w, h - r), (w - r * 0.3, h - r * 0.3), (w - r, h), (r, h), (r * 0.3, h - r * 0.3), (0, h - r)]
    for t in np.linspace(1, 0, 10):
        pts.append((cx - (neck / 2 + (w / 2 - neck / 2) * math.sin(t * math.pi / 2)), top + t * shoulder))
    pts.append((cx - neck / 2, top))
    mask = np.zeros((h + 1, w + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(np.array(pts)).astype(np.int32)], 255, lineType=cv2.LINE_AA)
    cap_w = int(neck * 1.25)
    cv2.rectangle(mask, (int(cx - cap_w / 2), 0), (int(cx + cap_w / 2), cap_h + 1), 255, -1)
    body = _colour(rng, BOTTLE_BODIES)
    img = _shaded(h + 1, body, _cylinder_shade(w + 1, rng, metallic=False))
    cap = _colour(rng, CAPS)
    img[: cap_h + 1] = cap * _cylinder_shade(w + 1, rng, metallic=False)[None, :, None]
    if rng.random() < 0.8:  # wrap-around label
        y0 = int(top + shoulder + (h - top - shoulder) * rng.uniform(0.05, 0.3))
        y1 = int(y0 + (h - y0) * rng.uniform(0.3, 0.6))
        label = _colour(rng, LABELS)
        img[y0:y1] = label * _cylinder_shade(w + 1, rng, metallic=False)[None, :, None]
        for _ in range(int(rng.integers(0, 4))):  # print on the label
            ty = int(rng.uniform(y0, max(y0 + 1, y1 - 4)))
            cv2.line(img, (int(w * 0.2), ty), (int(w * rng.uniform(0.4, 0.8)), ty), (255, 255, 255), 2)
    for _ in range(int(rng.integers(0, 3))):  # ribs of a PET body
        ry = int(rng.uniform(top + shoulder, h * 0.95))
        img[ry : ry + 2] *= 0.75
    clear = rng.random() < 0.55
    alpha = mask.astype(np.float32) / 255 * (rng.uniform(0.55, 0.85) if clear else 1.0)
    alpha[: cap_h + 1] = mask[: cap_h + 1] / 255
    return np.clip(img, 0, 255), alpha


def _can(size: int, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    h = size
    w = max(8, int(h * rng.uniform(0.42, 0.62)))
    ell = max(2, int(w * rng.uniform(0.08, 0.16)))
    mask = np.zeros((h + 1, w + 1), np.uint8)
    taper = int(w * 0.06)
    body = np.array(
        [
            (0, ell),
            (w, ell),
            (w, h - ell - taper),
            (w - taper, h - ell),
            (taper, h - ell),
            (0, h - ell - taper),
        ],
        np.int32,
    )
    cv2.fillPoly(mask, [body], 255, lineType=cv2.LINE_AA)
    cv2.ellipse(mask, (w // 2, ell), (w // 2, ell), 0, 0, 360, 255, -1, cv2.LINE_AA)
    cv2.ellipse(mask, (w // 2, h - ell), (w // 2 - taper, ell), 0, 0, 360, 255, -1, cv2.LINE_AA)
    colour = _colour(rng, CAN_COLOURS, jitter=12)
    img = _shaded(h + 1, colour, _cylinder_shade(w + 1, rng, metallic=True))
    silver = np.array([200, 200, 205], np.float32)
    rim = _shaded(h + 1, silver, _cylinder_shade(w + 1, rng, metallic=True))
    img[: 2 * ell + 2] = rim[: 2 * ell + 2]
    img[h - 2 * ell :] = rim[h - 2 * ell :]
    lid = np.zeros_like(mask)
    cv2.ellipse(lid, (w // 2, ell), (max(1, w // 2 - 2), max(1, ell - 1)), 0, 0, 360, 255, -1)
    img[lid > 0] = silver * 0.85
    cv2.ellipse(img, (w // 2, ell), (max(1, w // 5), max(1, ell // 2)), 0, 0, 360, (120, 120, 125), 1)
    kind = rng.random()
    if kind < 0.4:  # a band in a second colour
        y0 = int(rng.uniform(h * 0.3, h * 0.6))
        band = _colour(rng, CAN_COLOURS)
        img[y0 : y0 + int(h * rng.uniform(0.08, 0.25))] = (
            band * _cylinder_shade(w + 1, rng, metallic=True)[None, :, None]
        )
    elif kind < 0.75:  # a logo disc
        cv2.circle(
            img,
            (int(w * rng.uniform(0.3, 0.7)), int(h * rng.uniform(0.35, 0.65))),
            int(w * 0.22),
            tuple(float(c) for c in _colour(rng, LABELS)),
            -1,
            cv2.LINE_AA,
        )
    return np.clip(img, 0, 255), mask.astype(np.float32) / 255


def _blob_points(rng: Rng, w: int, h: int, n: int, roughness: float) -> np.ndarray:
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = 1 - roughness * rng.random(n)
    xs = w / 2 + np.cos(angles) * radii * w / 2
    ys = h / 2 + np.sin(angles) * radii * h / 2
    return np.round(np.stack([xs, ys], 1)).astype(np.int32)


def _other(size: int, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    """Things that are not returnable containers: cartons, crumpled paper or bags, cups, fruit."""
    kind = int(rng.integers(4))
    colour = _colour(rng, OTHER_COLOURS, jitter=25)
    if kind == 0:  # carton box, seen at an angle: a front face and a darker side face
        w, h = size, int(size * rng.uniform(0.45, 1.0))
        mask = np.full((h + 1, w + 1), 255, np.uint8)
        img = np.ones((h + 1, w + 1, 3), np.float32) * colour
        side = int(w * rng.uniform(0.15, 0.35))
        img[:, w - side :] *= 0.65
        img[: int(h * 0.15)] *= 1.15
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.uniform(0, w * 0.5)), int(rng.uniform(h * 0.2, h * 0.8))
            cv2.rectangle(
                img,
                (x0, y0),
                (x0 + int(w * 0.3), y0 + int(h * 0.1)),
                tuple(float(c) for c in _colour(rng, LABELS)),
                -1,
            )
    elif kind == 1:  # crumpled paper or a plastic bag: rough blob with crease lines
        w, h = size, int(size * rng.uniform(0.6, 1.0))
        mask = np.zeros((h + 1, w + 1), np.uint8)
        cv2.fillPoly(mask, [_blob_points(rng, w, h, int(rng.integers(9, 20)), 0.45)], 255, cv2.LINE_AA)
        img = np.ones((h + 1, w + 1, 3), np.float32) * colour
        for _ in range(int(rng.integers(5, 14))):
            p1 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            p2 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            cv2.line(
                img, p1, p2, tuple(float(c) * rng.uniform(0.55, 0.9) for c in colour), int(rng.integers(1, 4))
            )
    elif kind == 2:  # paper cup: a trapezoid with a rim
        h = size
        w = int(h * rng.uniform(0.6, 0.85))
        bottom = int(w * rng.uniform(0.55, 0.75))
        mask = np.zeros((h + 1, w + 1), np.uint8)
        pts = np.array([(0, 0), (w, 0), ((w + bottom) // 2, h), ((w - bottom) // 2, h)], np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)
        img = _shaded(h + 1, colour, _cylinder_shade(w + 1, rng, metallic=False))
        img[: max(2, h // 18)] = 245
    else:  # fruit or a ball: shaded disc
        w = h = size
        mask = np.zeros((h + 1, w + 1), np.uint8)
        cv2.ellipse(
            mask,
            (w // 2, h // 2),
            (w // 2, int(h / 2 * rng.uniform(0.75, 1.0))),
            0,
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
        )
        yy, xx = np.mgrid[0 : h + 1, 0 : w + 1].astype(np.float32)
        lx, ly = rng.uniform(0.25, 0.75, 2)
        light = 1.25 - 0.9 * np.hypot(xx / w - lx, yy / h - ly)
        img = colour[None, None, :] * light[..., None]
    return np.clip(img, 0, 255), mask.astype(np.float32) / 255


SPRITES: dict[int, Callable[[int, Rng], tuple[np.ndarray, np.ndarray]]] = {
    BOTTLE: _bottle,
    CAN: _can,
    OTHER: _other,
}


# --------------------------------------------------------------------------- background and camera


def _background(w: int, h: int, rng: Rng) -> np.ndarray:
    kind = int(rng.integers(4))
    base = rng.uniform(40, 200, 3).astype(np.float32)
    if rng.random() < 0.6:  # mostly greyish surfaces
        base[:] = base.mean() + rng.normal(0, 10, 3)
    img = np.ones((h, w, 3), np.float32) * base
    if kind == 0:  # tray: smooth gradient
        ramp = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.3), h, dtype=np.float32)
        img *= ramp[:, None, None]
    elif kind == 1:  # conveyor belt: ribs across the frame
        period = int(rng.integers(12, 40))
        ribs = 0.85 + 0.15 * (np.arange(h) % period < period // 3)
        img *= ribs[:, None, None].astype(np.float32)
    elif kind == 2:  # brushed metal: horizontal streaks
        streak = cv2.GaussianBlur(
            rng.normal(1, 0.12, (h, w)).astype(np.float32), (0, 0), sigmaX=25, sigmaY=0.8
        )
        img *= streak[..., None]
    else:  # tiles
        step = int(rng.integers(40, 120))
        for x in range(int(rng.integers(0, step)), w, step):
            cv2.line(img, (x, 0), (x, h), tuple(float(c) * 0.6 for c in base), 2)
        for y in range(int(rng.integers(0, step)), h, step):
            cv2.line(img, (0, y), (w, y), tuple(float(c) * 0.6 for c in base), 2)
    return img


def _lighting(img: np.ndarray, rng: Rng) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    field = 1 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    if rng.random() < 0.7:  # vignetting
        r = np.hypot(xx / w - 0.5, yy / h - 0.5)
        field *= 1 - rng.uniform(0.1, 0.45) * r**2 * 2
    if rng.random() < 0.4:  # a lamp's hot spot
        sx, sy = rng.uniform(0, w), rng.uniform(0, h)
        field += rng.uniform(0.1, 0.4) * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * (w * 0.2) ** 2))
    gain = rng.uniform(0.6, 1.35)
    tint = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    return img * field[..., None] * gain * tint


def _camera(img: np.ndarray, rng: Rng) -> np.ndarray:
    img = img + rng.normal(0, rng.uniform(0, 9), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    blur = rng.random()
    if blur < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.6))
    elif blur < 0.3:  # motion blur of an item dropped into the chamber
        k = int(rng.integers(3, 9))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1)
        img = cv2.filter2D(img, -1, cv2.warpAffine(kernel, rot, (k, k)))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*JPEG_QUALITY))])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


# --------------------------------------------------------------------------- placing objects


def _rotate(sprite: np.ndarray, alpha: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the centre onto a canvas big enough to hold every corner."""
    h, w = alpha.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = math.ceil(h * sin + w * cos) + 2, math.ceil(h * cos + w * sin) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    out = cv2.warpAffine(sprite, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    a = cv2.warpAffine(alpha, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    return out, a


def _composite(
    frame: np.ndarray,
    owner: np.ndarray,
    sprite: np.ndarray,
    alpha: np.ndarray,
    x: int,
    y: int,
    label: int,
    shadow: bool,
) -> None:
    """Alpha-blend the sprite at (x, y) (may hang over the frame edge); mark its pixels in ``owner``."""
    fh, fw = frame.shape[:2]
    sh, sw = alpha.shape
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(fw, x + sw), min(fh, y + sh)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    sx0, sy0 = fx0 - x, fy0 - y
    a = alpha[sy0 : sy0 + fy1 - fy0, sx0 : sx0 + fx1 - fx0]
    s = sprite[sy0 : sy0 + fy1 - fy0, sx0 : sx0 + fx1 - fx0]
    region = frame[fy0:fy1, fx0:fx1]
    if shadow:
        soft = cv2.GaussianBlur(a, (0, 0), max(1.0, 0.04 * max(sh, sw)))
        region *= (1 - 0.35 * soft)[..., None]
    region[:] = region * (1 - a[..., None]) + s * a[..., None]
    owner[fy0:fy1, fx0:fx1][a > 0.5] = label


def _place(rng: Rng, fw: int, fh: int, alpha: np.ndarray, allow_cut: bool) -> tuple[int, int] | None:
    """A top-left position keeping at least MIN_VISIBLE of the object in frame (None if none found)."""
    sh, sw = alpha.shape
    total = float((alpha > 0.5).sum())
    if total == 0:
        return None
    for _ in range(20):
        if allow_cut:
            x = int(rng.uniform(-sw * 0.5, fw - sw * 0.5))
            y = int(rng.uniform(-sh * 0.5, fh - sh * 0.5))
        else:
            x = int(rng.uniform(0, max(1, fw - sw)))
            y = int(rng.uniform(0, max(1, fh - sh)))
        fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(fw, x + sw), min(fh, y + sh)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        inside = float((alpha[fy0 - y : fy1 - y, fx0 - x : fx1 - x] > 0.5).sum())
        if inside / total >= MIN_VISIBLE:
            return x, y
    return None


def render(seed: int, index: int, size: tuple[int, int] = FRAME_SIZE, objects: int | None = None) -> Sample:
    """Frame ``index`` of the stream defined by ``seed``: the same pair always gives the same frame.

    ``objects`` overrides how many objects are drawn (0: the empty chamber of that frame, same
    background and light); the default draws 0 to 3 as the data sets do.
    """
    rng = np.random.default_rng([seed, index])
    fw, fh = size
    frame = _background(fw, fh, rng)
    owner = np.full((fh, fw), -1, np.int16)
    drawn = int(rng.choice([0, 1, 2, 3], p=[0.05, 0.65, 0.25, 0.05]))
    count = drawn if objects is None else objects
    placed: dict[int, int] = {}  # owner id -> class
    shadow = rng.random() < 0.7
    for k in range(count):
        cls = int(rng.integers(len(CLASSES)))
        scale = rng.uniform(0.35, 0.85) if count == 1 else rng.uniform(0.22, 0.55)
        sprite, alpha = SPRITES[cls](max(16, int(min(fw, fh) * scale)), rng)
        sprite, alpha = _rotate(sprite, alpha, rng.uniform(0, 360))
        spot = _place(rng, fw, fh, alpha, allow_cut=rng.random() < 0.25)
        if spot is None:
            continue
        _composite(frame, owner, sprite, alpha, spot[0], spot[1], k, shadow)
        placed[k] = cls
    boxes, masks = [], []
    for k, cls in placed.items():
        mask = owner == k
        ys, xs = np.nonzero(mask)
        if len(xs) < 30:  # hidden behind a later object
            continue
        boxes.append(
            LabeledBox(cls, float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        )
        masks.append(mask)
    image = _camera(_lighting(frame, rng), rng)
    return Sample(image=image, boxes=tuple(boxes), masks=tuple(masks))


def samples(
    seed: int, split: str, count: int, size: tuple[int, int] = FRAME_SIZE
) -> Iterator[tuple[int, Sample]]:
    """``count`` frames of one split as ``(index, sample)``; splits never share an index."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_OFFSETS)}")
    for i in range(count):
        index = SPLIT_OFFSETS[split] + i
        yield index, render(seed, index, size)


def write_split(root: Path, seed: int, split: str, count: int, labels: bool = True) -> Path:
    """Write ``root/images/<split>/*.png`` (+ ``root/labels/<split>/*.txt``); returns the image folder.

    PNG, lossless: the file holds exactly the pixels the labels describe (the camera's JPEG artefacts
    are already part of the rendered frame).
    """
    images = root / "images" / split
    images.mkdir(parents=True, exist_ok=True)
    label_dir = root / "labels" / split
    if labels:
        label_dir.mkdir(parents=True, exist_ok=True)
    for index, sample in samples(seed, split, count):
        stem = f"{split}_{index:07d}"
        cv2.imwrite(str(images / f"{stem}.png"), sample.image)
        if labels:
            (label_dir / f"{stem}.txt").write_text(sample.yolo_label(), encoding="utf-8")
    return images


def write_dataset(root: Path, seed: int, n_train: int, n_val: int) -> Path:
    """A YOLO data set (train + val) and its ``data.yaml``; returns the yaml path.

    val is scored by the trainer every epoch and picks best.pt: it is not held out from selection.
    """
    write_split(root, seed, "train", n_train)
    write_split(root, seed, "val", n_val)
    data_yaml = root / "data.yaml"
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    data_yaml.write_text(
        f"# synthetic intake frames, seed {seed}: rvm_toolchain.synth\n"
        f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}",
        encoding="utf-8",
    )
    return data_yaml


def main(argv: list[str] | None = None) -> int:
    """``python -m rvm_toolchain.synth``: a labelled data set or a folder of sample frames."""
    parser = argparse.ArgumentParser(description="synthetic intake-camera frames with YOLO labels")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=0, help="training frames (with --val: a YOLO data set)")
    parser.add_argument(
        "--val",
        type=int,
        default=0,
        help="validation frames (the trainer scores them every epoch and keeps the best)",
    )
    parser.add_argument("--frames", type=int, default=0, help="unlabelled sample frames (bench, calibration)")
    parser.add_argument("--split", default="frames", choices=sorted(SPLIT_OFFSETS), help="split for --frames")
    parser.add_argument(
        "--ext", default="png", choices=["png", "jpg"], help="--frames file type (jpg: as a camera delivers)"
    )
    args = parser.parse_args(argv)
    if args.train or args.val:
        print(write_dataset(args.out, args.seed, args.train, args.val))
    if args.frames:
        args.out.mkdir(parents=True, exist_ok=True)
        for index, sample in samples(args.seed, args.split, args.frames):
            cv2.imwrite(str(args.out / f"{args.split}_{index:07d}.{args.ext}"), sample.image)
        print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
