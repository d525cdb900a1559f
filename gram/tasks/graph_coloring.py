"""Graph colouring: give each of n nodes one of 3 colours so that no edge joins two equal colours.

One sequence holds the graph and the answer (the task convention): first the upper triangle of the
adjacency matrix, n(n-1)/2 tokens in the order (0,1), (0,2), ..., (n-2,n-1), then n colour slots.
Tokens: 0 pad, 1 no edge, 2 edge, 3 blank slot, 4-6 colours 0-2. In x the slots are blank; in y the
adjacency part is pad (no loss there) and the slots hold colours.

Data: Erdos-Renyi graphs G(n, p), p = 0.5 for n = 8 and 0.45 for n = 10, chosen so that a typical
3-colourable graph has a handful of colourings (coverage is then measurable with 20 samples). Graphs
that are not 3-colourable, duplicates, and graphs with more than `max_colourings` colourings are
dropped. Every colouring of a graph is enumerated and stored in canonical form modulo colour
permutation: colours numbered in order of first use (node 0 has colour 0, the first node not coloured 0
has colour 1). Enumeration is a breadth-first search over canonical partial colourings, vectorised
over graphs (a dataset builds in ~1-2 s). Split sizes are the paper's (7,002 / 255 for n = 8,
13,465 / 192 for n = 10).
"""
from __future__ import annotations

import re
from functools import lru_cache

import torch

from .base import PAD, Split, Task

NO_EDGE, EDGE, BLANK, COLOUR0 = 1, 2, 3, 4
N_COLOURS = 3


def enumerate_colourings(adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All proper 3-colourings in canonical form of a batch of graphs adj (G, n, n) bool, by a
    breadth-first search vectorised over graphs: colour node k given every surviving partial colouring
    of nodes 0..k-1. Returns graph index (M,) and colouring (M, n), grouped by graph."""
    G, n, _ = adj.shape
    g, col = torch.arange(G), torch.zeros(G, 1, dtype=torch.long)
    for k in range(1, n):
        top = col.max(1).values  # canonical: a new colour may only be the next unused one
        g, col, top = g.repeat_interleave(N_COLOURS), col.repeat_interleave(N_COLOURS, 0), top.repeat_interleave(N_COLOURS)
        c = torch.arange(N_COLOURS).repeat(len(g) // N_COLOURS)
        clash = (adj[g, :k, k] & (col == c[:, None])).any(1)
        keep = (c <= top + 1) & ~clash
        g, col = g[keep], torch.cat([col[keep], c[keep, None]], 1)
    return g, col  # repeat_interleave keeps rows grouped by graph, in graph order


def canonicalise(colours: torch.Tensor) -> torch.Tensor:
    """(B, n) colours in 0..2 -> the same partition with colours renamed in order of first use."""
    B, n = colours.shape
    first = torch.full((B, N_COLOURS), n, dtype=torch.long)
    first.scatter_reduce_(1, colours, torch.arange(n).expand(B, n), "amin")  # first node of each colour
    rank = first.argsort(1).argsort(1)  # colour -> its rank by first use
    return rank.gather(1, colours)


class GraphColoring(Task):
    multi_solution = True
    board = "graph"
    rules = (f"Colour every node of the graph with one of {N_COLOURS} colours so that no edge joins two nodes of "
             "the same colour. Renaming the colours gives the same answer.")
    def __init__(self, n: int, p: float, n_train: int, n_test: int, max_colourings: int = 64, name: str | None = None):
        self.n, self.p, self.n_train, self.n_test, self.max_colourings = n, p, n_train, n_test, max_colourings
        self.name = name or f"graph_coloring{n}"
        self.n_pairs = n * (n - 1) // 2
        self.seq_len, self.vocab = self.n_pairs + n, COLOUR0 + N_COLOURS
        self.pairs = torch.triu_indices(n, n, 1)  # (2, E) node pair of each adjacency token

    def recipe(self, seed: int = 0) -> dict:
        return {"task": self.name, "n": self.n, "colours": N_COLOURS, "edge_probability": self.p,
                "max_colourings": self.max_colourings, "train": self.n_train, "test": self.n_test,
                "split": "unique 3-colourable graphs, seeded shuffle", "seed": seed}

    # --- data -------------------------------------------------------------------------------------
    @lru_cache(maxsize=4)
    def _all(self, seed: int) -> tuple[Split, Split]:
        gen = torch.Generator().manual_seed(seed)
        need, seen, graphs, sols = self.n_train + self.n_test, set(), [], []
        bits = 2 ** torch.arange(self.n_pairs)  # a graph's key: its adjacency as an integer
        while len(graphs) < need:
            upper = torch.rand(4096, self.n_pairs, generator=gen) < self.p
            adj = torch.zeros(4096, self.n, self.n, dtype=torch.bool)
            adj[:, self.pairs[0], self.pairs[1]] = upper
            g, col = enumerate_colourings(adj)
            count = torch.bincount(g, minlength=4096)
            start = torch.cumsum(count, 0) - count
            keys = (upper.long() * bits).sum(1).tolist()
            for i in torch.nonzero((count > 0) & (count <= self.max_colourings)).flatten().tolist():
                if keys[i] not in seen and len(graphs) < need:
                    seen.add(keys[i])
                    graphs.append(upper[i].long())
                    sols.append(col[start[i]:start[i] + count[i]])
        adj = torch.stack(graphs)
        inputs = torch.cat([adj + NO_EDGE, torch.full((need, self.n), BLANK)], 1)
        owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(sols)])
        colours = torch.cat(sols)
        targets = torch.cat([torch.full((len(colours), self.n_pairs), PAD), colours + COLOUR0], 1)
        every = Split(inputs, targets, owner)
        test = torch.arange(self.n_test)  # graphs arrive in random order already: the first ones are the test set
        return every.subset(torch.arange(self.n_test, need)), every.subset(test)

    def build_split(self, name: str, seed: int) -> Split:
        return self._all(seed)[name == "test"]

    # --- validity ---------------------------------------------------------------------------------
    def conflicts(self, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """(B,) edges whose two ends share a colour. A slot without a colour token conflicts with every
        edge it touches (an uncoloured node is never a valid answer)."""
        edge = x[:, : self.n_pairs] == EDGE
        slots = pred[:, self.n_pairs:]
        colour = torch.where((slots >= COLOUR0) & (slots < self.vocab), slots, -1)
        u, v = colour[:, self.pairs[0]], colour[:, self.pairs[1]]
        bad = (u == v) | (u < 0) | (v < 0)
        return (edge & bad).sum(1)

    def is_correct(self, x, pred):
        slots = pred[:, self.n_pairs:]
        coloured = ((slots >= COLOUR0) & (slots < self.vocab)).all(1)
        return coloured & (self.conflicts(x, pred) == 0)

    def edges(self, x: torch.Tensor) -> list[tuple[int, int]]:
        """The graph of input x (S,) as node pairs."""
        return [(i, j) for (i, j), t in zip(self.pairs.T.tolist(), x[: self.n_pairs].tolist()) if t == EDGE]

    def clash_edges(self, x, pred) -> torch.Tensor:
        """(2, k) the edges of input x whose ends share a colour, or lack one, in pred."""
        slot = pred[self.n_pairs:].long()
        colour = torch.where((slot >= COLOUR0) & (slot < self.vocab), slot, -1)
        ends = self.pairs[:, x[: self.n_pairs] == EDGE]
        ci, cj = colour[ends[0]], colour[ends[1]]
        return ends[:, (ci == cj) | (ci < 0) | (cj < 0)]

    def clashes(self, x, pred):
        """The colour slots of the nodes on a clashing edge (clash_edges)."""
        hit = torch.zeros(len(pred), dtype=torch.bool)
        hit[self.n_pairs + self.clash_edges(x, pred).flatten()] = True
        return hit

    def edit(self, x, target, value=None):
        """Add the edge between the two nodes of target, or take it away."""
        i, j = sorted(int(v) for v in target)
        if i == j or not 0 <= i < j < self.n:
            raise ValueError(f"an edge joins two different nodes 0..{self.n - 1}, got {i}-{j}")
        k = int(((self.pairs[0] == i) & (self.pairs[1] == j)).nonzero()[0])
        x = x.clone()
        x[k] = NO_EDGE if x[k] == EDGE else EDGE
        return x

    def canonical(self, pred):
        slots = pred[:, self.n_pairs:]
        coloured = ((slots >= COLOUR0) & (slots < self.vocab)).all(1, keepdim=True)
        renamed = torch.where(coloured, canonicalise((slots - COLOUR0).clamp(0, N_COLOURS - 1)) + COLOUR0, slots)
        return torch.cat([torch.full_like(pred[:, : self.n_pairs], PAD), renamed], 1)

    def extra_metrics(self, split, samples, picked):
        P, N, S = samples.shape
        c = self.conflicts(split.inputs.repeat_interleave(N, 0), samples.reshape(P * N, S)).view(P, N).float()
        # the paper's conflict numbers look like totals over the test set: one sampling pass, averaged over N.
        # Width scaling answers with one picked sample per graph, so its conflicts are reported beside them.
        out = {"conflicts_per_graph": c.mean().item(), "conflicts_total": c.sum(0).mean().item()}
        for rule, index in picked.items():
            out[f"conflicts_per_graph_{rule}"] = c.gather(1, index[:, None]).mean().item()
        return out

    # --- text -------------------------------------------------------------------------------------
    def parse(self, text: str) -> torch.Tensor:
        """`n: i-j i-j ...` (nodes 0..n-1; commas also separate edges) -> input tokens."""
        head, sep, body = text.partition(":")
        if not sep or not head.strip().isdigit():
            raise ValueError(f"a graph is written 'n: i-j i-j ...' (e.g. '{self.n}: 0-1 1-2'), got {text!r}")
        if int(head) != self.n:
            raise ValueError(f"{self.name} takes graphs with {self.n} nodes, got n = {int(head)}")
        adj = torch.zeros(self.n, self.n, dtype=torch.long)
        for tok in body.replace(",", " ").split():
            m = re.fullmatch(r"(\d+)-(\d+)", tok)
            if not m:
                raise ValueError(f"malformed edge {tok!r}: write an edge as i-j with node numbers, e.g. 0-3")
            i, j = int(m[1]), int(m[2])
            if max(i, j) >= self.n:
                raise ValueError(f"edge {tok}: node {max(i, j)} is out of range 0..{self.n - 1}")
            if i == j:
                raise ValueError(f"edge {tok} is a self-loop: a node cannot be coloured differently from itself")
            adj[min(i, j), max(i, j)] = 1
        upper = adj[self.pairs[0], self.pairs[1]]
        return torch.cat([upper + NO_EDGE, torch.full((self.n,), BLANK)])

    def format_input(self, x: torch.Tensor) -> str:
        edges = [f"{i}-{j}" for (i, j), t in zip(self.pairs.T.tolist(), x[: self.n_pairs].tolist()) if t == EDGE]
        return f"{self.n}: " + " ".join(edges)

    def format_output(self, y: torch.Tensor) -> str:
        """One colour digit (0-2) per node, '?' for a slot without a colour, e.g. '01201201'."""
        return "".join(str(t - COLOUR0) if COLOUR0 <= t < self.vocab else "?" for t in y[self.n_pairs:].tolist())
