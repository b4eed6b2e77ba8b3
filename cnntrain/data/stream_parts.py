"""Which samples a streamed split takes from each shard file: a ShardPart (a shard's keys and labels in tar order)
and the seeded key-hash rules (KeyRule, KeySet) that carve validation, test, folds and dataset.fraction out of the
training shards the same way on every machine and run (cnntrain.data.streams reads the parts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace


def key_hash(key: str, salt: str) -> int:
    """A 64-bit hash of a sample's key, salted (the run seed, the rule): the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class KeyRule:
    """Whether a key is in a hashed subset: fraction `share` of all keys (buckets == 0), or bucket `bucket`
    of `buckets` (folds); `keep` False takes the complement."""

    salt: str
    share: float = 0.0
    buckets: int = 0
    bucket: int = 0
    keep: bool = True

    def __call__(self, key: str) -> bool:
        h = key_hash(key, self.salt)
        inside = h % self.buckets == self.bucket if self.buckets else h / 2.0**64 < self.share
        return inside == self.keep


@dataclass(frozen=True)
class KeySet:
    """Whether a key is one of a chosen few (dataset.fraction's seeded, stratified subset of a stream)."""

    keys: frozenset[str]

    def __call__(self, key: str) -> bool:
        return key in self.keys


@dataclass(frozen=True)
class ShardPart:
    """The samples one split takes from one shard file: those whose key passes every rule (their keys and
    labels, in tar order); the first is at canonical index `offset` of the split."""

    path: str
    keys: tuple[str, ...]
    labels: tuple[int, ...]
    rules: tuple[KeyRule, ...] = ()
    offset: int = 0
    spans: tuple[tuple[int, int, int], ...] | None = None  # each sample's image in the file (shard_index)

    @property
    def count(self) -> int:
        return len(self.labels)

    def takes(self, key: str) -> bool:
        return all(rule(key) for rule in self.rules)

    def where(self, rule: KeyRule) -> ShardPart:
        """The samples of this part that `rule` also takes."""
        kept = [i for i, key in enumerate(self.keys) if rule(key)]
        return replace(
            self,
            keys=tuple(self.keys[i] for i in kept),
            labels=tuple(self.labels[i] for i in kept),
            spans=None if self.spans is None else tuple(self.spans[i] for i in kept),
            rules=(*self.rules, rule),
            offset=0,
        )
