"""Perceptual hashes and near-duplicate search, vectorised for tens of thousands of images.

`phash` is the DCT hash: the 8x8 lowest frequencies of a 32x32 grayscale thumbnail, one bit
each for "above the median". A resized, re-encoded or slightly re-coloured copy of a picture
keeps almost all 64 bits; unrelated pictures differ in about half of them.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn

THUMB = 32  # side of the grayscale thumbnail the hash is computed from
_ROWS = 8192  # thumbnails (or pairs) worked through at a time
_BANDS, _BAND_BITS = 4, 16  # near-duplicate search: the hash cut into 4 bands of 16 bits
_FLAT_STD = 2.0  # gray levels: a thumbnail this even is a blank image
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 RGB -> (..., H, W) float32 luminance."""
    return rgb.astype(np.float32) @ _LUMA


def phash(gray: np.ndarray) -> np.ndarray:
    """64-bit DCT hashes of (n, 32, 32) grayscale thumbnails, as uint64 (n,)."""
    gray = np.asarray(gray).reshape(-1, THUMB, THUMB)
    out = np.empty(len(gray), dtype=np.uint64)
    for start in range(0, len(gray), _ROWS):  # in chunks: float copies of 300k thumbnails would be gigabytes
        part = gray[start : start + _ROWS].astype(np.float32)
        low = dctn(part, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(part), 64)
        bits = low > np.median(low, axis=1, keepdims=True)
        out[start : start + _ROWS] = np.packbits(bits, axis=1).view(">u8").reshape(-1)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise distance between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def near_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All pairs (i, j), i < j, whose hashes differ in at most `max_distance` bits, as an (m, 2) array.

    Exact, and never pairwise (multi-index hashing): the 64 bits are cut into 4 bands of 16; two hashes
    within `max_distance` bits agree within `max_distance // 4` bits on at least one band (pigeonhole).
    So for each band, each hash looks up only the buckets of the band values that close to its own (137 of
    65,536 for 10 bits), and those candidates are checked whole. 300,000 hashes take seconds and memory in
    proportion to them, where the n x n distance matrix took minutes and gigabytes.
    """
    hashes = np.asarray(hashes, np.uint64).reshape(-1)
    n = len(hashes)
    if n < 2:
        return np.empty((0, 2), np.int64)
    radius = max_distance // _BANDS
    masks = _masks(_BAND_BITS, radius)
    found = []
    for band in range(_BANDS):
        values = ((hashes >> np.uint64(band * _BAND_BITS)) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(values, kind="stable")
        starts = np.searchsorted(values[order], np.arange(1 << _BAND_BITS + 1))
        counts = starts[1:] - starts[:-1]
        for mask in masks:
            query = values ^ mask
            got = counts[query]
            total = int(got.sum())
            if not total:
                continue
            rows = np.repeat(np.arange(n), got)
            offsets = np.arange(total) - np.repeat(np.cumsum(got) - got, got)
            cols = order[np.repeat(starts[query], got) + offsets]
            keep = cols > rows
            rows, cols = rows[keep], cols[keep]
            close = hamming(hashes[rows], hashes[cols]) <= max_distance
            found.append(rows[close] * n + cols[close])
    if not found:
        return np.empty((0, 2), np.int64)
    codes = np.unique(np.concatenate(found))  # a pair close on several bands is found on each
    return np.stack([codes // n, codes % n], axis=1).astype(np.int64)


def _masks(bits: int, radius: int) -> np.ndarray:
    """Every `bits`-bit mask with at most `radius` bits set."""
    from itertools import combinations

    return np.array(
        [sum(1 << b for b in chosen) for r in range(radius + 1) for chosen in combinations(range(bits), r)],
        dtype=np.int64,
    )


def correlation(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Pearson correlation of the grayscale thumbnails of each pair.

    A flat thumbnail (a blank image) has no correlation to speak of: two flat ones count as
    alike (1.0) when their levels match, a flat one and a textured one as unrelated (0.0).
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), np.float32)
    for start in range(0, len(pairs), _ROWS):  # only the pairs' thumbnails, a chunk at a time, ever in float
        a, b = (_centred(thumbs[pairs[start : start + _ROWS, k]]) for k in (0, 1))
        (ca, ma, sa), (cb, mb, sb) = a, b
        dot = np.einsum("ij,ij->i", ca, cb) / ca.shape[1]
        blank = (sa < _FLAT_STD) | (sb < _FLAT_STD)
        both_blank = (sa < _FLAT_STD) & (sb < _FLAT_STD)
        result = np.where(blank, 0.0, dot / np.maximum(sa * sb, 1e-6))
        out[start : start + _ROWS] = np.where(both_blank & (np.abs(ma - mb) < 4), 1.0, result)
    return out


def _centred(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each thumbnail flattened and centred (float32), its mean and its standard deviation."""
    flat = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    mean = flat.mean(axis=1)
    centred = flat - mean[:, None]
    return centred, mean, np.sqrt((centred**2).mean(axis=1))


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
