"""Pixel phantoms for the demo builders: pure numpy, deterministic given a Generator.

Each phantom returns stored pixel values ready for Pixel Data; nothing here knows
DICOM. Volumes are painted one slice at a time from analytic shapes, so a 300-slice
CT costs a few milliseconds per slice and never the whole volume in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
U16 = NDArray[np.uint16]

# Stored values of the 12-bit modalities (CT, MR, radiographs).
MAX_12_BIT = 4095
CT_RESCALE_INTERCEPT = -1024


@dataclass(frozen=True, slots=True)
class Ellipsoid:
    """An ellipsoid in patient millimetres (x left, y posterior, z head) painting `value`.

    Later shapes paint over earlier ones, as organs sit inside the body outline.
    `angle` rotates the in-plane axes (radians); the z axis stays the patient's.
    """

    x: float
    y: float
    z: float
    a: float
    b: float
    c: float
    value: float
    angle: float = 0.0


class SlicePainter:
    """Rasterises ellipsoids into axial slices of a square grid centred on x = y = 0."""

    def __init__(self, shapes: Sequence[Ellipsoid], size: int, pixel_spacing: float) -> None:
        self._shapes = tuple(shapes)
        self._size = size
        self._z_low = np.array([s.z - s.c for s in self._shapes])
        self._z_high = np.array([s.z + s.c for s in self._shapes])
        # Pixel centres in mm; row index follows +y, column index +x.
        self._coords = ((np.arange(size) - (size - 1) / 2) * pixel_spacing).astype(np.float32)

    def paint(self, z: float, background: float) -> F32:
        image = np.full((self._size, self._size), background, dtype=np.float32)
        coords = self._coords
        for index in np.flatnonzero((self._z_low < z) & (z < self._z_high)):
            shape = self._shapes[index]
            scale = 1.0 - ((z - shape.z) / shape.c) ** 2
            if scale <= 0.0:
                continue
            a = shape.a * math.sqrt(scale)
            b = shape.b * math.sqrt(scale)
            reach_x, reach_y = (a, b) if shape.angle == 0.0 else (max(a, b),) * 2
            c0, c1 = np.searchsorted(coords, (shape.x - reach_x, shape.x + reach_x))
            r0, r1 = np.searchsorted(coords, (shape.y - reach_y, shape.y + reach_y))
            if c0 >= c1 or r0 >= r1:
                continue
            dx = coords[c0:c1] - np.float32(shape.x)
            dy = coords[r0:r1, None] - np.float32(shape.y)
            if shape.angle == 0.0:
                inside = (dx / a) ** 2 + (dy / b) ** 2 <= 1.0
            else:
                cos, sin = math.cos(shape.angle), math.sin(shape.angle)
                u = dx * cos + dy * sin
                v = dy * cos - dx * sin
                inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
            np.copyto(image[r0:r1, c0:c1], np.float32(shape.value), where=inside)
        return image


def smooth3(image: F32) -> F32:
    """A [1 2 1] binomial blur: the partial-volume softening of a real reconstruction."""
    padded = np.pad(image, 1, mode="edge")
    vertical = padded[:-2] + 2 * padded[1:-1] + padded[2:]
    blurred: F32 = (vertical[:, :-2] + 2 * vertical[:, 1:-1] + vertical[:, 2:]) / np.float32(16)
    return blurred


def gaussian_blur(image: F32, sigma: float, *, periodic: bool = False) -> F32:
    """Gaussian blur by FFT; non-periodic images are reflect-padded by three sigma first."""
    if sigma <= 0:
        return image
    pad = 0 if periodic else min(int(3 * sigma) + 1, *image.shape)
    work = np.pad(image, pad, mode="reflect") if pad else image
    fy = np.fft.fftfreq(work.shape[0])[:, None]
    fx = np.fft.rfftfreq(work.shape[1])[None, :]
    kernel = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    out = np.fft.irfft2(np.fft.rfft2(work) * kernel, s=work.shape)
    if pad:
        out = out[pad:-pad, pad:-pad]
    return out.astype(np.float32)


def normalised(field: F32) -> F32:
    """Zero mean, unit standard deviation (a flat field stays zero)."""
    centred = field - field.mean()
    std = float(centred.std())
    scaled: F32 = (centred / std if std > 0 else centred).astype(np.float32)
    return scaled


# -- CT -------------------------------------------------------------------------------------

CT_FIELD_OF_VIEW_MM = 400.0
CT_SCAN_LENGTH_MM = 360.0  # pelvis brim (z = 0) to lung apex


class CtPhantom:
    """A chest-abdomen phantom in Hounsfield units; `slice_pixels(k)` gives stored values."""

    def __init__(self, *, slices: int, size: int, rng: np.random.Generator) -> None:
        self.pixel_spacing = CT_FIELD_OF_VIEW_MM / size
        self.slice_spacing = CT_SCAN_LENGTH_MM / slices
        # Head first: slice 1 is the most superior, as scanners number an axial stack.
        self.z_positions = [CT_SCAN_LENGTH_MM - (k + 0.5) * self.slice_spacing for k in range(slices)]
        self._painter = SlicePainter(_ct_shapes(rng), size, self.pixel_spacing)
        # A bank of noise fields reused with random offsets: drawing 78 M normals would
        # cost more than painting the whole volume.
        pad = 64
        self._noise = rng.standard_normal((4, size + pad, size + pad), dtype=np.float32) * np.float32(9.0)
        self._offsets = rng.integers(0, pad, size=(slices, 2))
        self._size = size

    def slice_pixels(self, index: int) -> U16:
        hu = smooth3(self._painter.paint(self.z_positions[index], -1000.0))
        oy, ox = self._offsets[index]
        hu += self._noise[index % 4, oy : oy + self._size, ox : ox + self._size]
        return _to_stored(hu - CT_RESCALE_INTERCEPT)


def _ct_shapes(rng: np.random.Generator) -> list[Ellipsoid]:
    E = Ellipsoid
    shapes = [
        E(0, 0, 180, 172, 124, 420, -100),  # subcutaneous fat
        E(0, 2, 180, 160, 112, 420, 40),  # muscle and soft tissue
        E(0, 132, 180, 240, 5, 2000, 200),  # table
        E(0, 130, 180, 240, 3, 2000, -1000),  # its hollow core
        E(-76, -4, 272, 60, 82, 96, -860),  # right lung
        E(76, -4, 272, 58, 82, 96, -860),  # left lung
        E(0, -28, 272, 30, 52, 92, 35),  # mediastinum
        E(20, -30, 222, 58, 46, 50, 42),  # heart
        E(26, -34, 222, 32, 26, 32, 170),  # contrast-filled chambers
        E(-66, 4, 160, 86, 74, 60, 62),  # liver (its dome cuts the right lung base)
        E(84, 38, 170, 34, 34, 36, 52),  # spleen
        E(52, -42, 178, 40, 34, 30, 28),  # stomach
        E(52, -62, 192, 24, 10, 12, -1000),  # gastric air
        E(-64, 56, 104, 26, 33, 52, 150),  # right kidney cortex (enhanced)
        E(66, 56, 112, 26, 33, 52, 150),  # left kidney cortex
        E(-67, 56, 104, 12, 18, 32, 30),  # renal pelvis
        E(69, 56, 112, 12, 18, 32, 30),
        E(0, 60, 180, 24, 21, 420, 80),  # paraspinal soft tissue / discs
        E(24, 28, 170, 12, 12, 210, 170),  # descending aorta
        E(-22, 24, 120, 12, 10, 130, 65),  # inferior vena cava
        E(0, -104, 272, 16, 6, 72, 450),  # sternum
        E(-80, 86, 300, 34, 6, 50, 500, 0.55),  # scapulae
        E(80, 86, 300, 34, 6, 50, 500, -0.55),
    ]
    for _ in range(14):  # bowel gas in the lower abdomen
        x, y = rng.uniform(-90, 90), rng.uniform(-70, 20)
        r = rng.uniform(5, 14)
        shapes.append(E(x, y, rng.uniform(8, 85), r, r * rng.uniform(0.6, 1.0), r, -1000))
    for zc in np.arange(8.0, 365.0, 31.0):  # vertebrae: cortex, cancellous core, arch
        shapes += [
            E(0, 56, zc, 21, 18, 13, 700),
            E(0, 56, zc, 17, 14, 11, 230),
            E(0, 100, zc, 7, 15, 12, 650),
            E(-27, 80, zc, 12, 5, 8, 600),
            E(27, 80, zc, 12, 5, 8, 600),
        ]
    shapes.append(E(0, 84, 180, 9, 8, 420, 15))  # spinal canal
    for level in np.arange(190.0, 350.0, 24.0):  # ribs: dots along the chest wall, falling anteriorly
        for side in (-1.0, 1.0):
            for theta in np.linspace(0.35, 2.9, 11):
                x = side * 150 * math.sin(theta)
                y = 100 * math.cos(theta)
                shapes.append(E(x, y, level - 35 * (1 - math.cos(theta)) / 2, 6, 4, 7, 620))
    for _ in range(70):  # pulmonary vessels
        side = rng.choice((-1.0, 1.0))
        x, y, z = side * rng.uniform(40, 110), rng.uniform(-60, 50), rng.uniform(190, 340)
        r = rng.uniform(1.2, 3.0)
        shapes.append(E(x, y, z, r, r, rng.uniform(8, 25), 40))
    for _ in range(int(rng.integers(1, 4))):  # a lung nodule or three
        side = rng.choice((-1.0, 1.0))
        r = rng.uniform(3, 7)
        shapes.append(E(side * rng.uniform(55, 95), rng.uniform(-40, 30), rng.uniform(220, 320), r, r, r, 45))
    return shapes


# -- MR -------------------------------------------------------------------------------------

MR_FIELD_OF_VIEW_MM = 240.0
MR_SCAN_LENGTH_MM = 120.0


class MrPhantom:
    """A T1-weighted head phantom: bright scalp fat, dark skull, grey and white matter."""

    def __init__(self, *, slices: int, size: int, rng: np.random.Generator) -> None:
        self.pixel_spacing = MR_FIELD_OF_VIEW_MM / size
        self.slice_spacing = MR_SCAN_LENGTH_MM / slices
        self.z_positions = [MR_SCAN_LENGTH_MM - (k + 0.5) * self.slice_spacing for k in range(slices)]
        self._painter = SlicePainter(_mr_shapes(rng), size, self.pixel_spacing)
        # Receive-coil sensitivity: a smooth bias the viewer should not mistake for anatomy.
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        self._bias = 1.0 + 0.10 * ramp[None, :] - 0.06 * ramp[:, None] ** 2
        self._rng = rng
        self._size = size

    def slice_pixels(self, index: int) -> U16:
        signal = smooth3(self._painter.paint(self.z_positions[index], 0.0)) * self._bias
        # Magnitude images have Rician noise: |signal + complex gaussian|.
        noise = self._rng.standard_normal((2, self._size, self._size), dtype=np.float32) * np.float32(14.0)
        return _to_stored(np.hypot(signal + noise[0], noise[1]))


def _mr_shapes(rng: np.random.Generator) -> list[Ellipsoid]:
    E = Ellipsoid
    shapes = [
        E(0, 0, 55, 78, 98, 78, 900),  # scalp fat
        E(0, 0, 55, 73, 93, 73, 110),  # skull
        E(0, 1, 56, 68, 88, 69, 260),  # CSF over the convexity
        E(0, 2, 57, 65, 85, 66, 560),  # cortex
        E(0, 3, 60, 53, 71, 53, 760),  # white matter
        E(0, 0, 68, 1.5, 84, 58, 260),  # interhemispheric fissure
        E(-15, 2, 50, 10, 15, 12, 600),  # thalami
        E(15, 2, 50, 10, 15, 12, 600),
        E(-9, -6, 64, 5, 28, 18, 200, 0.15),  # lateral ventricles
        E(9, -6, 64, 5, 28, 18, 200, -0.15),
        E(0, 6, 48, 2, 10, 8, 200),  # third ventricle
        E(0, 50, 12, 46, 30, 22, 620),  # cerebellum
        E(0, 30, 14, 12, 12, 30, 640),  # brainstem
        E(-30, -68, 22, 12, 12, 11, 120),  # globes
        E(30, -68, 22, 12, 12, 11, 120),
    ]
    for _ in range(40):  # sulci: CSF clefts at the cortex
        theta = rng.uniform(0, 2 * math.pi)
        z = rng.uniform(30, 105)
        shapes.append(E(60 * math.cos(theta), 80 * math.sin(theta), z, 6, 2, 9, 260, theta + math.pi / 2))
    return shapes


def _to_stored(values: F32) -> U16:
    return np.clip(np.rint(values), 0, MAX_12_BIT).astype(np.uint16)


# -- Radiograph -----------------------------------------------------------------------------


def chest_radiograph(size: int, rng: np.random.Generator) -> U16:
    """A PA chest radiograph, 12 bits stored, bright where attenuation is high (MONOCHROME2)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    u = axis[None, :] + np.float32(rng.uniform(-0.015, 0.015))  # patient not quite centred
    v = axis[:, None]
    width = 0.44 * rng.uniform(0.95, 1.05)
    attenuation = np.zeros((size, size), dtype=np.float32)
    # Trunk below a sloping shoulder line, thickest in the middle; the neck above it.
    shoulder = -0.32 + 2.5 * np.clip(np.abs(u) - 0.26, 0, None) ** 2
    trunk = np.sqrt(np.clip(1 - (u / width) ** 2, 0, None)) * (v > shoulder)
    neck = np.sqrt(np.clip(1 - (u / 0.09) ** 2, 0, None)) * (v < -0.25)
    body = np.maximum(trunk, 0.8 * neck)
    attenuation += 0.55 * body
    inside = body > 0.05
    # Lungs: two tall ovals, cut below by the domes of the diaphragm.
    lungs = np.zeros_like(attenuation)
    for cx, lift in ((-0.17, 0.0), (0.175, 0.025)):
        dome = 0.17 + lift + 0.09 * ((u - cx) / 0.15) ** 2
        lung = np.clip(1 - ((u - cx) / 0.14) ** 2 - ((v + 0.02) / 0.28) ** 2, 0, None)
        lungs += np.sqrt(lung) * (v < dome)
    attenuation -= 0.40 * lungs * inside
    heart = np.clip(1 - ((u - 0.05) / 0.15) ** 2 - ((v - 0.10) / 0.115) ** 2, 0, None)
    attenuation += 0.13 * np.sqrt(heart)
    attenuation += 0.10 * np.clip(1 - (u / 0.055) ** 2, 0, None) * (v < 0.12)  # mediastinum
    spine = np.sqrt(np.clip(1 - (u / 0.032) ** 2, 0, None))
    vertebrae = 0.75 + 0.25 * np.cos(2 * np.pi * v / 0.045) ** 2
    attenuation += 0.11 * spine * vertebrae * (v > -0.42)
    # Posterior ribs: from the spine up and out, then curving down at the chest wall.
    for k in range(10):
        y0 = -0.26 + 0.047 * k
        for side in (-1, 1):
            lateral = side * u
            centre = y0 - 0.30 * lateral + 1.7 * lateral**2
            band = np.clip(1 - ((v - centre) / (0.009 + 0.0008 * k)) ** 2, 0, None)
            ribs = (lateral > 0.025) & (lateral < 0.37) & (centre < 0.30) & inside
            attenuation += 0.08 * np.sqrt(band) * ribs
    for side in (-1, 1):  # clavicles
        lateral = side * u
        centre = -0.285 - 0.08 * lateral
        band = np.clip(1 - ((v - centre) / 0.012) ** 2, 0, None)
        attenuation += 0.12 * np.sqrt(band) * ((lateral > 0.03) & (lateral < 0.28) & inside)
    attenuation = gaussian_blur(attenuation, max(size / 400, 0.5))
    noise = rng.standard_normal((size, size), dtype=np.float32) * np.float32(25.0)
    return _to_stored(250 + 4300 * attenuation + noise)


# -- Ultrasound -----------------------------------------------------------------------------


def ultrasound_frames(frames: int, rows: int, columns: int, rng: np.random.Generator) -> U8:
    """An RGB B-mode clip with colour Doppler: (frames, rows, columns, 3) uint8.

    A sector of speckle over a pulsating vessel; the tissue drifts with breathing and
    the flow in the Doppler box swings between red and blue over the cardiac cycle.
    """
    apex_x, apex_y = columns / 2, -0.06 * rows
    depth = 1.02 * rows
    half_angle = math.radians(36)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    r = np.hypot(xx - apex_x, yy - apex_y)
    theta = np.arctan2(xx - apex_x, yy - apex_y)
    sector = (r < depth) & (r > 0.1 * rows) & (np.abs(theta) < half_angle)
    # Speckle lives in polar coordinates (range x beam), as the scanner forms it.
    n_range, n_beams = int(depth) + 32, 192
    echo = rng.standard_normal((2, n_range, n_beams), dtype=np.float32)
    speckle = np.hypot(*echo)
    speckle = 0.5 * speckle + 0.25 * (np.roll(speckle, 1, axis=0) + np.roll(speckle, -1, axis=0))
    beam = np.clip(((theta + half_angle) / (2 * half_angle) * (n_beams - 1)).astype(np.int32), 0, n_beams - 1)
    # Echogenicity: a bright skin line, a liver-like parenchyma with a brighter capsule.
    echogenicity = 0.55 + 0.45 * np.exp(-(((r - 0.14 * rows) / 4.0) ** 2))
    echogenicity += 0.5 * np.exp(-(((r - 0.33 * rows - 6 * np.sin(3 * theta)) / 3.0) ** 2))
    gain = np.exp(-r / (1.6 * rows)).astype(np.float32)  # attenuation with depth, partly compensated
    vessel_x, vessel_y, vessel_r = apex_x + 0.08 * columns, 0.58 * rows, 0.11 * rows
    box = (np.abs(theta - 0.12) < 0.22) & (r > 0.40 * rows) & (r < 0.78 * rows)
    edge = box & ~(
        (np.abs(theta - 0.12) < 0.22 - 1.5 / np.maximum(r, 1))
        & (r > 0.40 * rows + 1.5)
        & (r < 0.78 * rows - 1.5)
    )
    out = np.zeros((frames, rows, columns, 3), dtype=np.uint8)
    for f in range(frames):
        phase = 2 * math.pi * f / max(frames, 1)
        breathing = int(round(3 * math.sin(phase)))
        index = np.clip(r.astype(np.int32) + 16 + breathing, 0, n_range - 1)
        radius = vessel_r * (1 + 0.10 * max(math.sin(2 * phase), 0.0))
        distance = np.hypot(xx - vessel_x, yy - vessel_y - breathing) / radius
        lumen = distance < 1
        # Posterior acoustic enhancement: fluid attenuates less than tissue.
        enhancement = 1 + 0.35 * ((xx - vessel_x) ** 2 < radius**2) * (yy > vessel_y + radius)
        grey = speckle[index, beam] * echogenicity * gain * enhancement * 95
        grey = np.where(lumen, grey * 0.08, grey)
        grey = np.where(sector, np.clip(grey, 0, 255), 0).astype(np.uint8)
        frame = np.repeat(grey[:, :, None], 3, axis=2)
        velocity = (1 - distance**2) * math.cos(2 * phase)
        flow = lumen & box & (np.abs(velocity) > 0.08)
        level = (90 + 165 * np.abs(velocity)).astype(np.uint8)
        towards = flow & (velocity > 0)
        away = flow & (velocity < 0)
        frame[towards] = np.stack([level[towards], level[towards] // 5, level[towards] // 8], axis=1)
        frame[away] = np.stack([level[away] // 8, level[away] // 3, level[away]], axis=1)
        frame[edge & sector] = 200
        _draw_depth_scale(frame, columns, rows)
        out[f] = frame
    return out


def _draw_depth_scale(frame: U8, columns: int, rows: int) -> None:
    x = columns - 12
    frame[:, x] = 150
    for tick in range(0, rows, max(rows // 12, 4)):
        frame[tick, x - 4 : x + 1] = 230
    # A colour bar, red over blue, as scanners show the Doppler scale.
    bar = np.linspace(255, 0, 40).astype(np.uint8)
    frame[8:48, 6:12, 0] = bar[:, None]
    frame[8:48, 6:12, 2] = bar[::-1, None]
    frame[8:48, 6:12, 1] = 20
