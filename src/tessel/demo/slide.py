"""An H&E-looking slide texture, rendered tile by tile at the base resolution.

Tissue outline and cellularity are coarse fields over the whole slide (one value per
32 pixels), bilinearly upsampled per tile by gathering rows then columns. The fine
detail (stroma fibres, nuclei, edge roughness) comes from periodic textures made by
FFT, so adjacent tiles join without seams and a tile costs well under a millisecond.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tessel.demo.phantoms import F32, U8, gaussian_blur, normalised
from tessel.errors import InvalidInput

BACKGROUND_RGB = (242, 240, 245)  # bare glass
CELL = 32  # pixels per coarse-field sample
PERIOD = 1024  # repeat of the fine textures, in base pixels
EDGE_ROUGHNESS = 0.15


class SlideTexture:
    """Deterministic slide pixels: `tile(x0, y0)` is the RGB tile whose corner is (x0, y0)."""

    def __init__(self, *, width: int, height: int, tile: int, rng: np.random.Generator) -> None:
        if tile % CELL:
            raise InvalidInput(f"tile size must be a multiple of {CELL}", tile=tile)
        self.width, self.height, self.tile = width, height, tile
        grid_w = -(-width // tile) * tile // CELL
        grid_h = -(-height // tile) * tile // CELL
        self._tissue = np.pad(_tissue_field(grid_h, grid_w, rng), 1, mode="edge")
        self._cellular = np.pad(_cellularity_field(grid_h, grid_w, rng), 1, mode="edge")
        self._stroma = _wrap(_stroma_texture(rng), tile)
        self._nests = _wrap(_cellular_texture(rng), tile)
        self._edge = _wrap(np.clip(normalised(_band_noise(rng, 5.0, 48.0)) / 3.0, -1, 1), tile)
        self._low, self._frac = _bilinear_taps(tile)
        # Full-size, not a (3,) vector: broadcasting over the last axis runs 3-long inner loops.
        self._background = np.empty((tile, tile, 3), dtype=np.float32)
        self._background[:] = BACKGROUND_RGB

    def is_background(self, x0: int, y0: int) -> bool:
        """True when no tissue reaches the tile: its pixels are all glass."""
        patch = self._patch(self._tissue, x0, y0)
        return float(patch.max()) + EDGE_ROUGHNESS <= 0.0 or x0 >= self.width or y0 >= self.height

    def tile_pixels(self, x0: int, y0: int) -> U8:
        t = self.tile
        out = np.empty((t, t, 3), dtype=np.uint8)
        out[:] = BACKGROUND_RGB
        if self.is_background(x0, y0):
            return out
        tissue = self._upsample(self._patch(self._tissue, x0, y0))
        px, py = x0 % PERIOD, y0 % PERIOD
        tissue += EDGE_ROUGHNESS * self._edge[py : py + t, px : px + t]
        alpha = np.clip(tissue * 8.0, 0.0, 1.0)[:, :, None]
        colour = self._stroma[py : py + t, px : px + t]
        cellular_patch = self._patch(self._cellular, x0, y0)
        if float(cellular_patch.max()) > 0.0:
            m = np.clip(self._upsample(cellular_patch), 0.0, 1.0)[:, :, None]
            colour = colour + m * (self._nests[py : py + t, px : px + t] - colour)
        blended = self._background + alpha * (colour - self._background)
        out[:] = np.rint(blended)
        # Beyond the total pixel matrix (edge tiles): glass, so lower levels stay clean.
        out[max(self.height - y0, 0) :] = BACKGROUND_RGB
        out[:, max(self.width - x0, 0) :] = BACKGROUND_RGB
        return out

    def _patch(self, field: F32, x0: int, y0: int) -> F32:
        gx, gy, n = x0 // CELL, y0 // CELL, self.tile // CELL + 2
        return field[gy : gy + n, gx : gx + n]

    def _upsample(self, patch: F32) -> F32:
        # Gathers, not a matrix product: BLAS threads waking for each 256 x 256 product
        # cost milliseconds per tile.
        low, frac = self._low, self._frac
        rows = patch[low] + frac[:, None] * (patch[low + 1] - patch[low])
        return rows[:, low] + frac[None, :] * (rows[:, low + 1] - rows[:, low])


def _bilinear_taps(tile: int) -> tuple[NDArray[np.intp], F32]:
    """For each pixel of a tile: the coarse sample before its centre, and how far past it."""
    position = (np.arange(tile) + 0.5) / CELL - 0.5 + 1  # +1: the fields are padded by one sample
    low = np.floor(position).astype(np.intp)
    return low, (position - low).astype(np.float32)


def _tissue_field(rows: int, columns: int, rng: np.random.Generator) -> F32:
    """Positive inside tissue: a few large fragments kept clear of the slide's edges."""
    scale = max(rows, columns)
    noise = rng.standard_normal((rows, columns), dtype=np.float32)
    large = normalised(gaussian_blur(noise, scale / 9, periodic=True))
    detail = normalised(
        gaussian_blur(rng.standard_normal((rows, columns), dtype=np.float32), scale / 40, periodic=True)
    )
    y = (np.arange(rows, dtype=np.float32)[:, None] + 0.5) / rows - 0.5
    x = (np.arange(columns, dtype=np.float32)[None, :] + 0.5) / columns - 0.5
    envelope = 1.0 - (x / 0.46) ** 2 - (y / 0.44) ** 2
    field = 0.55 * large + 0.25 * detail + 1.3 * envelope - 0.55
    # Fat and lumina: holes inside the tissue.
    holes = normalised(gaussian_blur(rng.standard_normal((rows, columns), dtype=np.float32), 2.0))
    tissue: F32 = (field - 0.6 * np.clip(holes - 1.6, 0, None)).astype(np.float32)
    return tissue


def _cellularity_field(rows: int, columns: int, rng: np.random.Generator) -> F32:
    """Where nuclei crowd (tumour nests, lymphoid aggregates): 0 stroma, 1 densely cellular."""
    noise = rng.standard_normal((rows, columns), dtype=np.float32)
    field = normalised(gaussian_blur(noise, max(rows, columns) / 30, periodic=True))
    cellular: F32 = np.clip((field - 0.5) * 1.2, -0.5, 1.0).astype(np.float32)
    return cellular


def _band_noise(
    rng: np.random.Generator, low: float, high: float, stretch: float = 1.0, angle: float = 0.0
) -> F32:
    """Periodic noise with features between `low` and `high` pixels, optionally streaked."""
    spectrum = np.fft.rfft2(rng.standard_normal((PERIOD, PERIOD), dtype=np.float32))
    # float32 throughout: numpy's FFT then stays in single precision, halving the peak memory.
    fy = np.fft.fftfreq(PERIOD).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(PERIOD).astype(np.float32)[None, :]
    u = fx * math.cos(angle) + fy * math.sin(angle)
    v = (fy * math.cos(angle) - fx * math.sin(angle)) * stretch
    f2 = u**2 + v**2
    passband = np.exp(-2 * (math.pi * low) ** 2 * f2) - np.exp(-2 * (math.pi * high) ** 2 * f2)
    return np.fft.irfft2(spectrum * passband, s=(PERIOD, PERIOD)).astype(np.float32)


def _nuclei(rng: np.random.Generator, spacing: float, radius: float, elongation: float) -> F32:
    """Coverage (0..1) of nuclei scattered about `spacing` pixels apart, by periodic convolution."""
    coverage = np.zeros((PERIOD, PERIOD), dtype=np.float32)
    count = int(PERIOD * PERIOD / spacing**2)
    for angle in np.linspace(0, math.pi, 4, endpoint=False):  # four orientation classes
        points = np.zeros((PERIOD, PERIOD), dtype=np.float32)
        ys, xs = rng.integers(0, PERIOD, size=(2, count // 4))
        np.add.at(points, (ys, xs), 1.0)
        d = (np.fft.fftfreq(PERIOD) * PERIOD).astype(np.float32)  # signed pixel offsets, wrapped
        dy, dx = d[:, None], d[None, :]
        u = dx * math.cos(angle) + dy * math.sin(angle)
        v = dy * math.cos(angle) - dx * math.sin(angle)
        r = np.sqrt((u / elongation) ** 2 + v**2)
        kernel = 0.5 - 0.5 * np.tanh((r - radius) / 1.2)  # a disc with a soft rim
        blob = np.fft.irfft2(np.fft.rfft2(points) * np.fft.rfft2(kernel), s=(PERIOD, PERIOD))
        coverage += blob.astype(np.float32)
    return np.clip(coverage, 0.0, 1.0)


def _stroma_texture(rng: np.random.Generator) -> F32:
    """Eosin-pink fibrous stroma with sparse, spindle-shaped nuclei."""
    fibres = np.clip(0.5 + 0.5 * normalised(_band_noise(rng, 1.5, 10.0, stretch=4.0, angle=0.6)), 0, 1)
    light, dark = np.array([238, 178, 212], np.float32), np.array([214, 118, 172], np.float32)
    rgb = light + fibres[:, :, None] * (dark - light)
    gaps = np.clip(normalised(_band_noise(rng, 4.0, 30.0)) - 1.3, 0, 1)[:, :, None]
    rgb += gaps * (np.array([246, 232, 240], np.float32) - rgb)
    return _stain_nuclei(rgb, _nuclei(rng, spacing=34.0, radius=3.0, elongation=2.4), rng)


def _cellular_texture(rng: np.random.Generator) -> F32:
    """Densely packed round nuclei in pink-purple cytoplasm."""
    tone = np.clip(0.5 + 0.4 * normalised(_band_noise(rng, 2.0, 16.0)), 0, 1)[:, :, None]
    light, dark = np.array([222, 160, 208], np.float32), np.array([196, 124, 188], np.float32)
    rgb = light + tone * (dark - light)
    return _stain_nuclei(rgb, _nuclei(rng, spacing=13.0, radius=4.2, elongation=1.25), rng)


def _stain_nuclei(rgb: F32, coverage: F32, rng: np.random.Generator) -> F32:
    """Hematoxylin: dark blue-purple, with some chromatin texture."""
    chromatin = np.clip(0.75 + 0.25 * normalised(_band_noise(rng, 0.6, 2.5)), 0.3, 1.2)[:, :, None]
    nucleus = np.array([88, 52, 140], np.float32) * chromatin
    stained: F32 = (rgb + 0.92 * coverage[:, :, None] * (nucleus - rgb)).astype(np.float32)
    return stained


def _wrap(texture: F32, margin: int) -> F32:
    """Append `margin` wrapped rows and columns, so any tile window is a plain slice."""
    return np.pad(texture, ((0, margin), (0, margin)) + ((0, 0),) * (texture.ndim - 2), mode="wrap")
