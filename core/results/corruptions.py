"""The 15 ImageNet-C corruptions at 5 severities (Hendrycks & Dietterich 2019), for measuring how a model holds up.

Written after the reference code as the `imagecorruptions` package (Michaelis et al. 2019, bethgelab) adapted it to
images of any size, with its constants, in numpy, scipy and OpenCV. That package itself does not run here: it calls
scikit-image's `gaussian(multichannel=True)` (removed in scikit-image 0.21), `np.float_` (removed in NumPy 2) and
`pkg_resources`, and it would install a second OpenCV (opencv-python) over the opencv-python-headless Flora pins.
Where this file departs from it, on purpose:

- random draws come from a generator seeded per photo, corruption and severity, so a measurement repeats exactly;
- scikit-image's Gaussian filter is scipy's `gaussian_filter` (the same kernel: mode 'nearest', truncated at 4
  sigma; 'reflect' and 3 sigma in `elastic_transform`, as there) and its HSV conversion OpenCV's (the same formulas);
- glass blur's "swap" is what the reference's numpy tuple assignment does: the pixel takes its neighbour's value
  and the neighbour keeps its own (the reference swaps views, so the second assignment writes back what the first
  wrote), done on an index map;
- frost blends a generated ice texture (a plasma fractal with thin bright crystal strokes, bluish white) where the
  reference blends one of six photographs of frost on glass that ship with the package, not with any library here.
  Its figures are not comparable with published ImageNet-C frost numbers.

Motion blur is the package's numpy version (the ImageNet-C original calls ImageMagick through Wand). Every function
takes and returns an (H, W, 3) uint8 RGB image; H and W at least 32, as the package requires.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.ndimage import zoom as scizoom

CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
FAMILIES = {
    "noise": CORRUPTIONS[0:3],
    "blur": CORRUPTIONS[3:7],
    "weather": CORRUPTIONS[7:11],
    "digital": CORRUPTIONS[11:15],
}
SEVERITIES = (1, 2, 3, 4, 5)


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """`image` (H, W, 3) uint8 under corruption `name` at `severity` (1-5). Raises ValueError for a bad request."""
    if name not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}. Received: {name!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1-5. Received: {severity}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image. Received: {image.dtype} {image.shape}")
    if min(image.shape[:2]) < 32:
        raise ValueError(f"the image must be at least 32 pixels on each side. Received: {image.shape[:2]}")
    out = _FUNCTIONS[name](image, severity, rng)
    return np.uint8(np.clip(np.asarray(out, dtype=np.float64), 0, 255))


# ----------------------------------------------------------------------------------------------------- helpers


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's `filters.gaussian` of a 2-D or (H, W, C) image: channels are not blurred into each other."""
    sigmas = (sigma, sigma) if x.ndim == 2 else (sigma, sigma, 0)
    return gaussian_filter(np.asarray(x, dtype=np.float64), sigmas, mode=mode, truncate=truncate)


def _disk(radius: float, alias_blur: float = 0.1) -> np.ndarray:
    if radius <= 8:
        span, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        span, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(span, span)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)  # supersampled: antialiased


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """A (mapsize, mapsize) height map in [0, 1] by the diamond-square algorithm; mapsize a power of two."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        drgrid = maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = drgrid + np.roll(drgrid, 1, axis=0) + ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[0:mapsize:stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(ltsum)
        ttsum = drgrid + np.roll(drgrid, 1, axis=1) + ulgrid + np.roll(ulgrid, -1, axis=0)
        maparray[stepsize // 2 : mapsize : stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def _next_power_of_2(x: int) -> int:
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


def _clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    ch0 = int(np.ceil(img.shape[0] / float(zoom_factor)))
    top0 = (img.shape[0] - ch0) // 2
    ch1 = int(np.ceil(img.shape[1] / float(zoom_factor)))
    top1 = (img.shape[1] - ch1) // 2
    return scizoom(img[top0 : top0 + ch0, top1 : top1 + ch1], (zoom_factor, zoom_factor, 1), order=1)


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    if dx < 0:
        shifted = np.roll(image, shift=image.shape[1] + dx, axis=1)
        shifted[:, dx:] = shifted[:, dx - 1 : dx]
    elif dx > 0:
        shifted = np.roll(image, shift=dx, axis=1)
        shifted[:, :dx] = shifted[:, dx : dx + 1]
    else:
        shifted = image
    if dy < 0:
        shifted = np.roll(shifted, shift=image.shape[0] + dy, axis=0)
        shifted[dy:, :] = shifted[dy - 1 : dy, :]
    elif dy > 0:
        shifted = np.roll(shifted, shift=dy, axis=0)
        shifted[:dy, :] = shifted[dy : dy + 1, :]
    return shifted


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    width = radius * 2 + 1
    kernel = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    kernel /= kernel.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    blurred = np.zeros_like(x, dtype=np.float32)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if np.abs(dy) >= x.shape[0] or np.abs(dx) >= x.shape[1]:
            break  # the simulated motion left the image
        blurred = blurred + kernel[i] * _shift(x, dx, dy)
    return blurred


def _hsv(x: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] to HSV with H in [0, 1] (scikit-image's convention)."""
    hsv = cv2.cvtColor(np.asarray(x, dtype=np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] /= 360.0
    return hsv


def _rgb(hsv: np.ndarray) -> np.ndarray:
    hsv = np.array(hsv, dtype=np.float32)
    hsv[..., 0] *= 360.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def frost_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A generated frost-on-glass texture, (height, width, 3) in 0-255: a bluish-white plasma fractal (the milky
    ice) with thin bright strokes (the crystals), blurred a little. Flora's stand-in for the reference's photos."""
    side = _next_power_of_2(max(height, width, 32))
    ice = plasma_fractal(side, 1.8, rng)[:height, :width]
    crystals = np.zeros((height, width), dtype=np.float32)
    for _ in range(max(20, height * width // 150)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.03, 0.15) * max(height, width)
        x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
        cv2.line(crystals, (int(x0), int(y0)), (int(x1), int(y1)), float(rng.uniform(0.4, 1.0)), 1, cv2.LINE_AA)
    crystals = cv2.GaussianBlur(crystals, (3, 3), 0.6)
    grey = np.clip(0.55 * ice + 0.6 * crystals, 0, 1)
    tint = np.array([0.86, 0.93, 1.0])  # bluish white
    return grey[..., None] * tint * 255.0


# -------------------------------------------------------------------------------------------------- corruptions


def gaussian_noise(x, severity, rng):
    c = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]
    x = np.array(x) / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x, severity, rng):
    c = [60, 25, 12, 5, 3][severity - 1]
    x = np.array(x) / 255.0
    return np.clip(rng.poisson(x * c) / float(c), 0, 1) * 255


def impulse_noise(x, severity, rng):
    """scikit-image's random_noise(mode='s&p', amount=c): each value replaced with that chance, half by 1, half 0."""
    c = [0.03, 0.06, 0.09, 0.17, 0.27][severity - 1]
    x = np.array(x) / 255.0
    replaced = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    x[replaced & salt] = 1.0
    x[replaced & ~salt] = 0.0
    return np.clip(x, 0, 1) * 255


def defocus_blur(x, severity, rng):
    c = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
    x = np.array(x) / 255.0
    kernel = _disk(radius=c[0], alias_blur=c[1])
    channels = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
    return np.clip(np.array(channels).transpose((1, 2, 0)), 0, 1) * 255


def glass_blur(x, severity, rng):
    c = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    sigma, delta, iterations = c
    blurred = np.uint8(_gaussian(np.array(x) / 255.0, sigma) * 255)
    height, width = blurred.shape[:2]
    rows = list(range(height - delta, delta, -1))
    cols = list(range(width - delta, delta, -1))
    source = [list(range(r * width, (r + 1) * width)) for r in range(height)]  # which pixel each position shows
    draws = rng.integers(-delta, delta, size=(iterations, len(rows), len(cols), 2)).tolist()
    for it in range(iterations):  # the reference's order: bottom-right to top-left, one random neighbour each
        for i, h in enumerate(rows):
            for j, w in enumerate(cols):
                dx, dy = draws[it][i][j]
                source[h][w] = source[h + dy][w + dx]
    shuffled = blurred.reshape(-1, 3)[np.array(source).ravel()].reshape(blurred.shape)
    return np.clip(_gaussian(shuffled / 255.0, sigma), 0, 1) * 255


def motion_blur(x, severity, rng):
    c = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    angle = rng.uniform(-45, 45)
    return np.clip(_motion_blur(np.array(x), radius=c[0], sigma=c[1], angle=angle), 0, 255)


def zoom_blur(x, severity, rng):
    c = [
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.02),
        np.arange(1, 1.26, 0.02),
        np.arange(1, 1.31, 0.03),
    ][severity - 1]
    x = (np.array(x) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in c:
        layer = _clipped_zoom(x, zoom_factor)[: x.shape[0], : x.shape[1], :]
        out[: layer.shape[0], : layer.shape[1]] += layer
    return np.clip((x + out) / (len(c) + 1), 0, 1) * 255


def snow(x, severity, rng):
    c = [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ][severity - 1]
    x = np.array(x, dtype=np.float32) / 255.0
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = _clipped_zoom(layer[..., np.newaxis], c[2])
    layer[layer < c[3]] = 0
    layer = np.clip(layer.squeeze(), 0, 1)
    layer = _motion_blur(layer, radius=c[4], sigma=c[5], angle=rng.uniform(-135, -45))
    layer = (np.round(layer * 255).astype(np.uint8) / 255.0)[..., np.newaxis][: x.shape[0], : x.shape[1], :]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(x.shape[0], x.shape[1], 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    out = np.array(x, dtype=np.float64)
    flakes = layer + np.rot90(layer, k=2)
    out[: flakes.shape[0], : flakes.shape[1]] += flakes[: out.shape[0], : out.shape[1]]
    return np.clip(out, 0, 1) * 255


def frost(x, severity, rng):
    c = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
    height, width = np.array(x).shape[:2]
    return np.clip(c[0] * np.array(x) + c[1] * frost_texture(height, width, rng), 0, 255)


def fog(x, severity, rng):
    c = [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)][severity - 1]
    height, width = np.array(x).shape[:2]
    map_size = _next_power_of_2(int(max(height, width)))
    x = np.array(x) / 255.0
    max_val = x.max()
    x += c[0] * plasma_fractal(map_size, c[1], rng)[:height, :width][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def brightness(x, severity, rng):
    c = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
    hsv = _hsv(np.array(x) / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(_rgb(hsv), 0, 1) * 255


def contrast(x, severity, rng):
    c = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
    x = np.array(x) / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(image, severity, rng):
    image = np.array(image, dtype=np.float32) / 255.0
    shape = image.shape
    sigma = np.array(shape[:2]) * 0.01
    alpha = [250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12][severity - 1]
    max_dx = max_dy = shape[0] * 0.005
    dx = (_field(rng.uniform(-max_dx, max_dx, size=shape[:2]), sigma) * alpha).astype(np.float32)
    dy = (_field(rng.uniform(-max_dy, max_dy, size=shape[:2]), sigma) * alpha).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    xx, yy, zz = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(yy + dy, (-1, 1)), np.reshape(xx + dx, (-1, 1)), np.reshape(zz, (-1, 1))
    warped = map_coordinates(image, indices, order=1, mode="reflect").reshape(shape)
    return np.clip(warped, 0, 1) * 255


def _field(noise: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """scikit-image's gaussian(noise, sigma, mode='reflect', truncate=3) of a 2-D field, sigma per axis."""
    return gaussian_filter(noise, tuple(sigma), mode="reflect", truncate=3)


def pixelate(x, severity, rng):
    c = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
    height, width = np.array(x).shape[:2]
    image = Image.fromarray(np.asarray(x, dtype=np.uint8))
    image = image.resize((int(width * c), int(height * c)), Image.Resampling.BOX)
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST))


def jpeg_compression(x, severity, rng):
    c = [25, 18, 15, 10, 7][severity - 1]
    output = io.BytesIO()
    Image.fromarray(np.asarray(x, dtype=np.uint8)).save(output, "JPEG", quality=c)
    output.seek(0)
    with Image.open(output) as image:
        return np.asarray(image.convert("RGB"))


_FUNCTIONS = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
