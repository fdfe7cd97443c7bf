"""Frozen features computed once: a network cut where its frozen, deterministic prefix ends, and a process-wide
cache of the prefix's output per split.

A linear probe (or freeze_k, or lp_ft's probing epochs) trains only the layers above a frozen prefix. When
that prefix behaves the same in training and evaluation (no dropout, BatchNorm in eval) and the input is not
augmented, its output for a split never changes: it is computed once and the rest of the network trains on it.
The cut is found on the network's torch.fx graph, so any traceable model qualifies; one that does not trace,
or whose prefix hands more than one tensor to the rest, simply trains uncached.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from harness import internals
from harness.learn.data import Split
from harness.learn.models import TransferNet

CACHE_BYTES = int(1e9)  # features kept per process (least recently used dropped first)
FEATURE_BATCH = 256  # images per forward pass of the prefix


@dataclass
class Cut:
    """`net` split in two: `suffix(prefix(x)) == net(x)`; the suffix shares the network's own modules."""

    prefix: torch.fx.GraphModule
    suffix: torch.fx.GraphModule
    boundary: str  # the graph value the prefix hands over


class _LeafTracer(torch.fx.Tracer):
    """Every module without children stays one call, so its `training` flag is read when it runs, not traced."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return not any(True for _ in m.children()) or super().is_leaf_module(m, qualname)


def _varies_in_training(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    """A call whose output depends on trainable weights or on the training mode (dropout, BatchNorm in train)."""
    if node.op == "call_module":
        m = modules[node.target]
        if any(p.requires_grad for p in m.parameters()):
            return True
        if isinstance(m, (internals.batch_norm_base(), internals.dropout_base(), nn.RReLU)):
            return m.training
        # a module of our own or of another library may read `self.training` (torchvision's StochasticDepth),
        # unless it says it does not (harness.learn.nets.MaxPool2x2)
        own = not type(m).__module__.startswith("torch.nn") and not getattr(m, "same_in_training", False)
        return m.training and (own or hasattr(m, "dropout"))
    if node.op == "get_attr":
        owner, _, name = node.target.rpartition(".")
        value = getattr(modules[owner], name)
        return isinstance(value, nn.Parameter) and value.requires_grad
    if node.op in ("call_function", "call_method"):
        name = getattr(node.target, "__name__", str(node.target))
        return "dropout" in name or "stochastic_depth" in name
    return False


def cut(model: TransferNet) -> Cut | None:
    """Cut `model.net` (frozen as it is now, in training mode) where its deterministic frozen prefix ends.

    None when nothing is frozen, the graph cannot be traced, or more than one tensor crosses the cut.
    """
    net = model.net
    model.train()  # the modes the network trains in decide what is deterministic
    try:
        graph = _LeafTracer().trace(net)
    except Exception:  # noqa: BLE001 - an untraceable model trains uncached, as before
        return None
    modules = dict(net.named_modules())
    nodes = list(graph.nodes)
    frontier = next((i for i, n in enumerate(nodes) if _varies_in_training(n, modules)), None)
    if frontier is None:
        return None
    position = {n: i for i, n in enumerate(nodes)}
    crossing = {n for n in nodes[:frontier] for user in n.users if position[user] >= frontier}
    if len(crossing) != 1 or next(iter(crossing)).op == "placeholder":
        return None
    boundary = next(iter(crossing))

    prefix_graph, env = torch.fx.Graph(), {}
    for node in nodes[:frontier]:
        env[node] = prefix_graph.node_copy(node, lambda n: env[n])
    prefix_graph.output(env[boundary])
    suffix_graph, env = torch.fx.Graph(), {}
    env[boundary] = suffix_graph.placeholder("features")
    for node in nodes[frontier:]:
        env[node] = suffix_graph.node_copy(node, lambda n: env[n])
    return Cut(torch.fx.GraphModule(net, prefix_graph), torch.fx.GraphModule(net, suffix_graph), boundary.name)


def _fingerprint(module: nn.Module) -> str:
    """The prefix's weights themselves, hashed: the same checkpoint (or seed's random init) gives the same key."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


class FeatureCache:
    """Features of splits, keyed by (split, prefix weights, cut); bounded by bytes, least recently used out.

    A split is identified by the object itself (held weakly): tasks are built once per process and shared by
    every trial, arm and seed, and a split built again is a new object, so a stale entry is never hit.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, tuple[weakref.ref, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for _, t in self.entries.values())

    @torch.no_grad()
    def features(self, c: Cut, split: Split, weights_key: str) -> torch.Tensor | None:
        """The prefix's output for every image of `split`, computed once; None when it would not fit."""
        key = (id(split), weights_key, c.boundary)
        entry = self.entries.get(key)
        if entry is not None and entry[0]() is split:
            self.entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        c.prefix.eval()
        out = torch.cat([c.prefix(x) for x, _ in split.batches(FEATURE_BATCH)])
        size = out.numel() * out.element_size()
        if size > self.max_bytes:
            return None
        for stale in [k for k, (ref, _) in self.entries.items() if ref() is None]:  # splits no longer in use
            del self.entries[stale]
        self.entries[key] = (weakref.ref(split), out)
        while self.bytes > self.max_bytes:
            self.entries.popitem(last=False)
        return out

    def clear(self) -> None:
        self.entries.clear()


CACHE = FeatureCache()  # one per process: shared by every run it trains


@dataclass
class CachedRun:
    """What an epoch trains on when its frozen prefix is cached: the suffix, and the splits as features."""

    forward: nn.Module
    train: Split
    val: Split


def cached_run(model: TransferNet, train: Split, val: Split, cache: FeatureCache) -> CachedRun | None:
    """The suffix and cached features for `model` frozen as it is now, or None to train the whole network."""
    c = cut(model)
    if c is None:
        return None
    weights_key = _fingerprint(c.prefix)
    f_train, f_val = cache.features(c, train, weights_key), cache.features(c, val, weights_key)
    model.train()
    if f_train is None or f_val is None:
        return None
    return CachedRun(c.suffix, Split(f_train, train.y, train.indices), Split(f_val, val.y, val.indices))
