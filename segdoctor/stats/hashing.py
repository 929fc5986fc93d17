"""Perceptual hashes for finding identical and near-identical images (split leakage, SD154).

A difference hash (dHash) compares neighbouring cells of a small gray thumbnail: it survives
re-encoding (JPEG), resizing, and brightness/contrast changes, and differs in about half its bits
between unrelated images. Computed on the cached 128x128 gray grid, so it costs microseconds.
"""

from __future__ import annotations

import hashlib

import numpy as np

from segdoctor.stats.downsample import area_reduce, small_gray

#: hash side: 16x16 = 256 bits (finer than the usual 8x8, so that neighbouring slices of a volume or
#: frames of a video differ by more than re-encoded copies of one image do)
HASH_SIDE = 16


def difference_hash(gray: np.ndarray, *, side: int = HASH_SIDE) -> bytes:
    """dHash of a 2-D gray array: side*side bits (horizontal gradient signs of a side x (side+1) thumbnail)."""
    g = np.asarray(gray, dtype=np.float32)
    thumb = area_reduce(g, side, side + 1)
    if thumb.shape != (side, side + 1):
        from segdoctor.stats.downsample import nearest_resize

        thumb = nearest_resize(thumb, side, side + 1)
    bits = thumb[:, 1:] > thumb[:, :-1]
    return np.packbits(bits.ravel()).tobytes()


def hamming_distance(a: bytes, b: bytes) -> int:
    """Number of differing bits between two equal-length hashes."""
    x = np.frombuffer(a, dtype=np.uint8) ^ np.frombuffer(b, dtype=np.uint8)
    return int(np.unpackbits(x).sum())


def hash_matrix(hashes: list[bytes]) -> np.ndarray:
    """(N, bits) bool matrix of hashes, for vectorised Hamming distances."""
    if not hashes:
        return np.zeros((0, HASH_SIDE * HASH_SIDE), dtype=bool)
    return np.unpackbits(np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), -1), axis=1).astype(bool)


def image_hashes(data, rec: dict) -> None:
    """Extractor: ``rec["image_hash"]`` (dHash bytes) and ``rec["image_digest"]`` (exact-content digest)."""
    if data.image is None:
        return
    a = data.image.array
    rec["image_hash"] = difference_hash(small_gray(data.image))
    # digest of a strided sample + the shape: equal for byte-identical pixel content, cheap to compute
    sample = np.ascontiguousarray(a[:: max(1, a.shape[0] // 64), :: max(1, a.shape[1] // 64)])
    h = hashlib.blake2b(sample.tobytes(), digest_size=8)
    h.update(repr((a.shape, str(a.dtype))).encode())
    rec["image_digest"] = h.hexdigest()


#: dHash bits (of 256) up to which two images count as near-identical. Measured on ../shared/realdata:
#: JPEG re-encoding (quality 30-75), halving the size, +-20 brightness or sensor noise change 0-11 bits;
#: unrelated images differ by >= 60 (consecutive ISBI EM slices, 50 nm apart) and 78-129 (Kvasir).
NEAR_DUPLICATE_BITS = 24
#: cross-split hash comparisons at most (a seeded subsample of the larger split beyond)
MAX_COMPARISONS = 100_000_000


def hash_words(hashes: list[bytes]) -> np.ndarray:
    """(N, 4) uint64 words of 256-bit hashes, for fast XOR + popcount."""
    if not hashes:
        return np.zeros((0, 4), np.uint64)
    return np.frombuffer(b"".join(hashes), dtype=np.uint64).reshape(len(hashes), -1)


def near_duplicates(a: np.ndarray, b: np.ndarray, *, max_bits: int = NEAR_DUPLICATE_BITS,
                    block: int = 2048) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with Hamming distance(a[i], b[j]) <= max_bits, for (N, W) and (M, W) uint64 words.

    Blockwise, with a first pass on one word (a necessary condition: one word's distance never exceeds
    the total), so memory stays bounded and unrelated pairs cost a quarter of the work."""
    out: list[tuple[int, int, int]] = []
    if len(a) == 0 or len(b) == 0:
        return out
    for s in range(0, len(a), block):
        blk = a[s: s + block]
        first = np.bitwise_count(blk[:, None, 0] ^ b[None, :, 0])
        ii, jj = np.nonzero(first <= max_bits)
        if ii.size == 0:
            continue
        d = np.bitwise_count(blk[ii] ^ b[jj]).sum(axis=1)
        keep = d <= max_bits
        out.extend(zip((ii[keep] + s).tolist(), jj[keep].tolist(), d[keep].astype(int).tolist()))
    return out
