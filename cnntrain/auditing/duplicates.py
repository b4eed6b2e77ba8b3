"""Duplicates and leaks: images whose files (or decoded pixels, for a dataset without files) hash the same, and
near-duplicates by a perceptual hash (imagehash's pHash, which survives resizing and JPEG re-compression). Each
pair carries the cosine similarity of the two images in the trained model's embedding space; a pair whose images
lie in different splits (train, val, test) is a leak.

Why not the embeddings alone: a classifier's penultimate layer puts every image of a class close together (that
is what training does), so a cosine threshold there pairs look-alikes of one class as readily as copies; it is
reported beside each pair and used for no decision.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from cnntrain.auditing.extra import require
from cnntrain.auditing.keys import Key
from cnntrain.reading import hash_file

HASH_SIZE = 16  # pHash of 16 x 16 DCT coefficients: 256 bits (the 64-bit default pairs look-alike digits)
PHASH_DISTANCE = 20  # of 256 bits: at most this many differ for a near-duplicate (benchmarks/audit.py)
CHUNK = 256  # rows compared with every hash at a time


@dataclass
class Pair:
    a: int  # indices into the audit's order, a < b
    b: int
    kind: str  # exact (same content) or near (perceptual hash)
    distance: int  # pHash bits that differ
    cosine: float  # in fold 0's embedding space

    def leak(self, splits: list[str]) -> bool:
        return splits[self.a] != splits[self.b]


def content_hashes(keys: list[Key], images: torch.Tensor) -> list[str]:
    """SHA-256 of each image file (bounded reads, cnntrain.reading), or of its decoded pixels without a file."""
    hashes = []
    for i, key in enumerate(keys):
        digest = hashlib.sha256()
        if key.path is not None:
            hash_file(key.path, digest, what="image")
        else:
            digest.update(images[i].contiguous().numpy().tobytes())
        hashes.append(digest.hexdigest())
    return hashes


def perceptual_hashes(images: torch.Tensor) -> np.ndarray:
    """Each image's 256-bit pHash as four unsigned 64-bit words [N, 4]."""
    imagehash = require("imagehash")
    from PIL import Image  # Pillow: with the images

    out = np.zeros((len(images), HASH_SIZE * HASH_SIZE // 64), dtype=np.uint64)
    for i, image in enumerate(images):
        array = image.permute(1, 2, 0).numpy()
        picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        bits = np.packbits(imagehash.phash(picture, hash_size=HASH_SIZE).hash.flatten())
        out[i] = bits.view(">u8").astype(np.uint64)
    return out


def find_pairs(
    keys: list[Key], images: torch.Tensor, embeddings: torch.Tensor, max_distance: int = PHASH_DISTANCE
) -> list[Pair]:
    """Exact pairs (each copy with the first of its group) and near pairs (pHash within max_distance bits), exact
    first, then by distance."""
    unit = torch.nn.functional.normalize(embeddings.double(), dim=1)
    hashes = perceptual_hashes(images)
    digests = content_hashes(keys, images)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, digest in enumerate(digests):
        groups[digest].append(i)
    pairs = [_pair(m[0], other, "exact", hashes, unit) for m in groups.values() for other in m[1:]]
    for a, b in _close(hashes, max_distance):
        if digests[a] != digests[b]:  # copies are paired once, each with the first of its group
            pairs.append(_pair(a, b, "near", hashes, unit))
    return sorted(pairs, key=lambda p: (p.kind != "exact", p.distance, -p.cosine, p.a, p.b))


def _pair(a: int, b: int, kind: str, hashes: np.ndarray, unit: torch.Tensor) -> Pair:
    distance = int(np.bitwise_count(hashes[a] ^ hashes[b]).sum())
    return Pair(a, b, kind, distance, float(unit[a] @ unit[b]))


def _close(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
    """Every (a, b), a < b, whose hashes differ in at most max_distance bits (in chunks: N x CHUNK at a time)."""
    found = []
    for lo in range(0, len(hashes), CHUNK):
        block = hashes[lo : lo + CHUNK, None, :] ^ hashes[None, :, :]
        rows, cols = np.nonzero(np.bitwise_count(block).sum(axis=2, dtype=np.int64) <= max_distance)
        rows = rows + lo
        keep = rows < cols
        found.extend(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
    return found
