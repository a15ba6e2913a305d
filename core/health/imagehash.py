"""Perceptual hashes and near-duplicate search, vectorised for tens of thousands of images.

`phash` is the DCT hash: the 8x8 lowest frequencies of a 32x32 grayscale thumbnail, one bit
each for "above the median". A resized, re-encoded or slightly re-coloured copy of a picture
keeps almost all 64 bits; unrelated pictures differ in about half of them.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn

THUMB = 32  # side of the grayscale thumbnail the hash is computed from
_BLOCK = 1024  # rows of the distance matrix computed at once (1024 x n uint64: a few MB)
_FLAT_STD = 2.0  # gray levels: a thumbnail this even is a blank image
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 RGB -> (..., H, W) float32 luminance."""
    return rgb.astype(np.float32) @ _LUMA


def phash(gray: np.ndarray) -> np.ndarray:
    """64-bit DCT hashes of (n, 32, 32) grayscale thumbnails, as uint64 (n,)."""
    gray = np.asarray(gray, np.float32).reshape(-1, THUMB, THUMB)
    low = dctn(gray, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(gray), 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").reshape(-1).astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise distance between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def near_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All pairs (i, j), i < j, whose hashes differ in at most `max_distance` bits, as an (m, 2) array.

    Exact for every pair: block by block over the upper triangle of the n x n distance matrix,
    about a second for 10,000 hashes.
    """
    hashes = np.asarray(hashes, np.uint64)
    n = len(hashes)
    found = []
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        distances = hamming(hashes[start:stop, None], hashes[None, start:])
        rows, cols = np.nonzero(distances <= max_distance)
        cols = cols + start
        rows = rows + start
        keep = cols > rows
        found.append(np.stack([rows[keep], cols[keep]], axis=1))
    return np.concatenate(found) if found else np.empty((0, 2), np.int64)


def correlation(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pearson correlation of the grayscale thumbnails of each pair.

    A flat thumbnail (a blank image) has no correlation to speak of: two flat ones count as
    alike (1.0) when their levels match, a flat one and a textured one as unrelated (0.0).
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return np.empty(0, np.float32)
    flat = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    mean = flat.mean(axis=1)
    centred = flat - mean[:, None]
    std = np.sqrt((centred**2).mean(axis=1))
    a, b = pairs[:, 0], pairs[:, 1]
    dot = np.einsum("ij,ij->i", centred[a], centred[b]) / flat.shape[1]
    blank = (std[a] < _FLAT_STD) | (std[b] < _FLAT_STD)
    both_blank = (std[a] < _FLAT_STD) & (std[b] < _FLAT_STD)
    result = np.where(blank, 0.0, dot / np.maximum(std[a] * std[b], 1e-6))
    result = np.where(both_blank & (np.abs(mean[a] - mean[b]) < 4), 1.0, result)
    return result.astype(np.float32)


def groups(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (size >= 2) of the graph on n nodes with edges `pairs`, sorted."""
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    for i, j in np.asarray(pairs, np.int64).reshape(-1, 2):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    members: dict[int, list[int]] = {}
    for i in np.unique(np.asarray(pairs, np.int64).reshape(-1)):
        members.setdefault(find(int(i)), []).append(int(i))
    return sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda g: g[0])
