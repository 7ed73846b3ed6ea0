#!/usr/bin/env python3
"""A PyTorch-eager reference of checkerboard's transformer, for checking the port and for the
speed comparison of issue 14 (scripts/torch-compare.ts runs both engines).

Written from DESIGN.md ("Sequence and inputs", "Transformer", "Sampling"), paper Eq. 1 and the
engine (native/engine/model/model.cc, sample/sampler.cc, param_layout.cc, init.cc,
cpu/model_ops_ref.h), with nothing of the engine imported: it reads our files only
(model.safetensors of a checkpoint folder and the tokenizer's codebook beside it).

  logits  teacher-forced logits of given codes (full blockwise attention, as in training), and
          the KV-cached logits of the same codes (as in sampling), into an .npz
  sample  class-conditional sampling with a KV cache and CFG; codes and, for the patch
          tokenizer, the decoded images, into an .npz
  bench   seconds per image of sampling a preset (random weights) at several batch sizes, in
          fp32 and bf16; one JSON line

Needs Debian's python3-torch (1.13) and numpy; run with /usr/bin/python3 where another python3
comes first on PATH.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

# OpenMP threads that spin at the end of every parallel region take the core from the thread that
# still works whenever the machine runs anything else: on this shared 2-core machine, passive
# waiting samples 7 to 16 times faster with 2 threads (measured on the tiny preset). It must be
# set before torch starts OpenMP; an OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F

# ---- files ------------------------------------------------------------------------------------


def read_safetensors(path):
    """(tensors as float32 torch tensors, metadata dict) of a .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    kinds = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    tensors = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        raw = data[8 + n + a : 8 + n + b]
        if e["dtype"] == "BF16":
            values = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] in kinds:
            values = np.frombuffer(raw, kinds[e["dtype"]]).astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {e['dtype']}, not a float")
        tensors[name] = torch.from_numpy(values.reshape(e["shape"]).copy())
    return tensors, meta


def load_checkpoint(path):
    """(config dict, params, codebook (K, Dl), order name, tokenizer json) of a checkpoint folder
    written by `checkerboard train` (or its model.safetensors), tokenizer from its tokenizer/."""
    import os

    folder = path if os.path.isdir(path) else os.path.dirname(path)
    model_file = os.path.join(folder, "model.safetensors") if os.path.isdir(path) else path
    params, meta = read_safetensors(model_file)
    if meta.get("format") != "checkerboard-model":
        raise ValueError(f"{model_file}: not a checkerboard model (format {meta.get('format')})")
    config = json.loads(meta["config"])
    tok_dir = os.path.join(folder, "tokenizer")
    with open(os.path.join(tok_dir, "tokenizer.json")) as f:
        tok = json.load(f)
    tok_tensors, _ = read_safetensors(os.path.join(tok_dir, "tokenizer.safetensors"))
    if tok["format"] == "checkerboard-patch-vq":
        codebook = tok_tensors["codebook"]
    else:  # LlamaGen's VQ: the l2-normalised rows are the latents
        codebook = F.normalize(tok_tensors["quantize.embedding.weight"], dim=1)
    return config, params, codebook, meta.get("order", "checkerboard"), tok


# ---- plans (src/plan: orders, blocks, layout) ---------------------------------------------------


def checkerboard_order(side):
    """Paper Algorithm 1: quadrants round robin TL, BR, TR, BL; [x, y] with x the column. A side
    that is not a power of two keeps the positions of the next power of two inside the grid."""

    def build(s, x0, y0):
        if s == 1:
            return [(x0, y0)]
        d = s // 2
        quads = [build(d, x0, y0), build(d, x0 + d, y0 + d), build(d, x0 + d, y0),
                 build(d, x0, y0 + d)]
        return [q[i] for i in range(d * d) for q in quads]

    full = 1
    while full < side:
        full *= 2
    return [(x, y) for x, y in build(full, 0, 0) if x < side and y < side]


def raster_order(side):
    return [(x, y) for y in range(side) for x in range(side)]


def quadrant_order(side):
    half = (side + 1) // 2
    spans = [(0, half), (half, side)]
    regions = [[(x, y) for y in range(*ys) for x in range(*xs)] for ys in spans for xs in spans]
    longest = max(len(r) for r in regions)
    return [r[t] for t in range(longest) for r in regions if t < len(r)]


ORDERS = {"checkerboard": checkerboard_order, "raster": raster_order, "quadrant": quadrant_order}


def block_sizes(count, steps):
    """min(P, count) contiguous blocks whose sizes differ by at most one, the larger last."""
    blocks = min(steps, count)
    base, larger = divmod(count, blocks)
    return [base if i < blocks - larger else base + 1 for i in range(blocks)]


class Layout:
    """The slot layout: slot 0 the class token (block 0), then scale by scale and block by block
    the tokens of each block. Per slot: scale, position p, fed position q (-1: none), the end of
    its block (it sees slots < visible_end); per block: start, end, scale."""

    def __init__(self, scales, steps, order):
        if order not in ORDERS:
            raise ValueError(f"order '{order}' is not supported here ({', '.join(ORDERS)})")
        steps = [steps] * len(scales) if isinstance(steps, int) else list(steps)
        self.scales = list(scales)
        self.scale_of, self.pos_of, self.prev_pos_of, self.visible_end = [-1], [-1], [-1], [1]
        self.block_start, self.block_end, self.block_scale = [0], [1], [-1]
        self.scale_offset = []
        offset = 0
        for k, side in enumerate(scales):
            self.scale_offset.append(offset)
            offset += side * side
            positions = ORDERS[order](side)
            rank, prev_start, prev_size = 0, -1, 0
            for size in block_sizes(side * side, steps[k]):
                start = len(self.pos_of)
                self.block_start.append(start)
                self.block_end.append(start + size)
                self.block_scale.append(k)
                for j in range(size):
                    x, y = positions[rank + j]
                    self.scale_of.append(k)
                    self.pos_of.append(y * side + x)
                    self.visible_end.append(start + size)
                    if prev_start < 0:
                        self.prev_pos_of.append(-1)
                    else:
                        px, py = positions[prev_start + j % prev_size]
                        self.prev_pos_of.append(py * side + px)
                prev_start, prev_size, rank = rank, size, rank + size
        self.length = len(self.pos_of)  # T = 1 + L
        self.steps = len(self.block_start) - 1

    def position_index(self, t):
        """Index into pos_emb / rope_angles of slot t's p (0: the class token)."""
        if t == 0:
            return 0
        return 2 + self.scale_offset[self.scale_of[t]] + self.pos_of[t]

    def fed_position_index(self, t):
        """Index of slot t's q: 1 (the learned position) for a scale's first block."""
        if t == 0:
            return 0
        q = self.prev_pos_of[t]
        return 1 if q < 0 else 2 + self.scale_offset[self.scale_of[t]] + q


# ---- random parameters (param_layout.cc, init.cc) ------------------------------------------------


def rope_axial_angles(config):
    """The initial learned RoPE table (init.cc): 7/8 of the pairs spatial (x then y, token centres
    on the final grid, frequencies pi .. pi/N), 1/8 from the scale index."""
    scales, heads, width = config["scales"], config["heads"], config["width"]
    pairs = width // heads // 2
    scale_pairs = max(1, pairs // 8)
    spatial = pairs - scale_pairs
    x_pairs, y_pairs = spatial // 2, spatial - spatial // 2
    N, K = scales[-1], len(scales)

    def spatial_freq(i, count):
        return math.pi if count <= 1 else math.pi * N ** (-i / (count - 1))

    def scale_freq(i):
        return math.pi / 2 if scale_pairs <= 1 else (math.pi / 2) * max(K, 2) ** (
            -i / (scale_pairs - 1))

    rows = 2 + sum(s * s for s in scales)
    angles = torch.zeros(rows, pairs, dtype=torch.float64)
    at = 2
    for k, s in enumerate(scales):
        for y in range(s):
            for x in range(s):
                cx, cy = (x + 0.5) * N / s, (y + 0.5) * N / s
                a = [cx * spatial_freq(i, x_pairs) for i in range(x_pairs)]
                a += [cy * spatial_freq(i, y_pairs) for i in range(y_pairs)]
                a += [k * scale_freq(i) for i in range(scale_pairs)]
                angles[at] = torch.tensor(a, dtype=torch.float64)
                at += 1
    return angles.float()


def random_params(config, seed=0):
    """Parameters of the table's names and shapes, initialised as init.cc does (normal 0.02,
    zero biases and AdaLN, axial RoPE), from torch's generator (not our SplitMix)."""
    g = torch.Generator().manual_seed(seed)
    W, F_, P = config["width"], config["mlpRatio"] * config["width"], 2 + sum(
        s * s for s in config["scales"])
    normal = lambda *shape: torch.randn(*shape, generator=g) * 0.02
    p = {"class_emb": normal(config["classes"] + 1, W), "pos_emb": normal(P, W),
         "rope_angles": rope_axial_angles(config), "u_start": normal(W), "v_start": normal(W)}

    def linear(name, out, inp, zero=False):
        p[name + ".w"] = torch.zeros(out, inp) if zero else normal(out, inp)
        p[name + ".b"] = torch.zeros(out)

    linear("latent_mlp.fc1", W, config["latentDim"])
    linear("latent_mlp.fc2", W, W)
    linear("in_proj", W, 4 * W)
    for l in range(config["depth"]):
        linear(f"blocks.{l}.ada", 6 * W, W, zero=True)
        linear(f"blocks.{l}.qkv", 3 * W, W)
        if l < config["ropeMixLayers"]:
            p[f"blocks.{l}.rope_mix"] = torch.zeros(config["heads"])
        linear(f"blocks.{l}.attn_out", W, W)
        linear(f"blocks.{l}.fc1", F_, W)
        linear(f"blocks.{l}.fc2", W, F_)
    linear("head_ada", 2 * W, W, zero=True)
    linear("head", config["vocab"], W)
    return p


# ---- the model --------------------------------------------------------------------------------


def gelu(x):
    return F.gelu(x, approximate="tanh")  # the engine's GELU is the tanh form


def layernorm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)  # no affine; AdaLN modulates


class Reference:
    """The transformer on `params` (name -> float32 tensor) in `dtype` (float32 or bfloat16: the
    weights and every activation; logits go back to float32 for sampling)."""

    def __init__(self, config, params, codebook, dtype=torch.float32, attention="matmul",
                 linear="aten"):
        self.c = config
        self.dtype = dtype
        self.attention_kind = attention
        self.W, self.H = config["width"], config["heads"]
        self.hd = self.W // self.H
        self.p = {k: v.to(dtype).contiguous() for k, v in params.items()}
        self.codebook = codebook.to(dtype).contiguous()  # (K, Dl)
        # RoPE in float32 whatever the precision: cos and sin of the learned angles.
        angles = params["rope_angles"].float()  # (positions, pairs)
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)
        # linear "mkldnn": every matmul through oneDNN's fp32 inner product (weights reordered
        # once), instead of ATen's addmm (OpenBLAS here); bf16 matmuls take oneDNN either way.
        self.mkldnn = {}
        if linear == "mkldnn":
            if dtype != torch.float32:
                raise ValueError("--linear mkldnn is for fp32 (bf16 matmuls use oneDNN already)")
            self.mkldnn = {k[:-2]: (self.p[k].to_mkldnn(), self.p[k[:-2] + ".b"].to_mkldnn())
                           for k in self.p if k.endswith(".w")}
        self.mix = [torch.sigmoid(params[f"blocks.{l}.rope_mix"].float()).to(dtype).view(
            1, self.H, 1, 1) if l < config["ropeMixLayers"] else None
            for l in range(config["depth"])]

    def linear(self, x, name):
        if self.mkldnn:
            w, b = self.mkldnn[name]
            y = torch._C._nn.mkldnn_linear(x.reshape(-1, x.shape[-1]).to_mkldnn(), w, b)
            return y.to_dense().view(*x.shape[:-1], -1)
        return F.linear(x, self.p[name + ".w"], self.p[name + ".b"])

    # Conditioning: class embedding -> SiLU -> each layer's 6 AdaLN chunks and the head's 2.
    def conditioning(self, labels):
        c_emb = self.p["class_emb"][labels]  # (R, W)
        c_act = F.silu(c_emb)
        ada = [self.linear(c_act, f"blocks.{l}.ada").unsqueeze(1).chunk(6, dim=-1)
               for l in range(self.c["depth"])]  # each (R, 1, W): shift1 scale1 gate1 shift2 ...
        head = self.linear(c_act, "head_ada").unsqueeze(1).chunk(2, dim=-1)
        return c_emb, ada, head

    # Eq. 1: x = W_proj concat(mlp(u), mlp(v), pos(p), pos(q)), learned u/v where flagged.
    def inputs(self, B, u_lat, v_lat, u_learned, v_learned, pos_p, pos_q):
        """u_lat, v_lat (B, m, Dl) or None (every slot learned); u/v_learned (m) bool or None
        (none learned); pos_p, pos_q (m)."""
        m = pos_p.shape[0]

        def mlp(lat):
            return self.linear(gelu(self.linear(lat, "latent_mlp.fc1")), "latent_mlp.fc2")

        def part(lat, learned, start):
            if lat is None:  # every slot takes the learned vector
                return self.p[start].expand(B, m, self.W)
            out = mlp(lat)
            if learned is not None:
                out = torch.where(learned.view(1, m, 1), self.p[start], out)
            return out

        pe = self.p["pos_emb"]
        concat = torch.cat([part(u_lat, u_learned, "u_start"), part(v_lat, v_learned, "v_start"),
                            pe[pos_p].expand(B, m, self.W), pe[pos_q].expand(B, m, self.W)],
                           dim=-1)  # (B, m, 4W)
        return self.linear(concat, "in_proj")  # (B, m, W)

    def rope(self, x, pos):
        """x (R, H, m, hd): pair i of each head, (x[2i], x[2i+1]), rotated by angle[pos, i]."""
        cos, sin = self.cos[pos].unsqueeze(0).unsqueeze(0), self.sin[pos].unsqueeze(0).unsqueeze(0)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)

    def layer(self, l, x, ada, pos_p, pos_q, attend):
        """One block on x (R, m, W); `attend(q, k, v)` with (R, H, m, hd) after RoPE."""
        R, m, W = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = ada
        h = layernorm(x) * (1 + scale1) + shift1
        qkv = self.linear(h, f"blocks.{l}.qkv").view(R, m, 3, self.H, self.hd).permute(2, 0, 3, 1, 4)
        q = self.rope(qkv[0], pos_p)
        k = self.rope(qkv[1], pos_p)
        if self.mix[l] is not None:  # key RoPE mixing: alpha R(p) k + (1 - alpha) R(q) k
            a = self.mix[l]
            k = a * k + (1 - a) * self.rope(qkv[1], pos_q)
        att = attend(q, k, qkv[2])  # (R, H, m, hd)
        att = att.transpose(1, 2).reshape(R, m, W)
        x = x + gate1 * self.linear(att, f"blocks.{l}.attn_out")
        h = layernorm(x) * (1 + scale2) + shift2
        return x + gate2 * self.linear(gelu(self.linear(h, f"blocks.{l}.fc1")), f"blocks.{l}.fc2")

    def head(self, x, head_ada):
        shift, scale = head_ada
        return self.linear(layernorm(x) * (1 + scale) + shift, "head")

    def attend(self, q, k, v, mask):
        """Softmax attention, scale 1/sqrt(hd); mask (mq, mk) bool (True: visible) or None."""
        if self.attention_kind == "sdpa":
            return torch._C._nn._scaled_dot_product_attention(q, k, v, mask, 0.0, False, False)[0]
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        return torch.matmul(torch.softmax(s, dim=-1), v)

    # -- teacher forcing (training's forward) --

    def teacher_forced(self, codes, labels, layout):
        """Logits (B, T, K) of the sequences of `codes` (B, L) (raster per scale), every slot at
        once with blockwise causal attention; slot 0's row is the class token's."""
        B, T = codes.shape[0], layout.length
        cb, Dl = self.codebook, self.codebook.shape[1]
        offs = layout.scale_offset
        u_lat = torch.zeros(B, T, Dl, dtype=self.dtype)
        v_lat = torch.zeros(B, T, Dl, dtype=self.dtype)
        ups = [None] + [self.upsample(codes[:, offs[k - 1] : offs[k - 1] + s0 * s0], s0, s1)
                        for k, (s0, s1) in enumerate(zip(layout.scales, layout.scales[1:]), 1)]
        u_learned = torch.zeros(T, dtype=torch.bool)
        v_learned = torch.zeros(T, dtype=torch.bool)
        for t in range(1, T):
            k, p, q = layout.scale_of[t], layout.pos_of[t], layout.prev_pos_of[t]
            if k == 0:
                u_learned[t] = True
            else:
                u_lat[:, t] = ups[k][:, p]
            if q < 0:
                v_learned[t] = True
            else:
                v_lat[:, t] = cb[codes[:, offs[k] + q]]
        pos_p = torch.tensor([layout.position_index(t) for t in range(T)])
        pos_q = torch.tensor([layout.fed_position_index(t) for t in range(T)])
        c_emb, ada, head_ada = self.conditioning(labels)
        x = self.inputs(B, u_lat, v_lat, u_learned, v_learned, pos_p, pos_q)
        x = torch.cat([c_emb.unsqueeze(1), x[:, 1:]], dim=1)  # the class token's input
        vis = torch.tensor(layout.visible_end)
        mask = torch.arange(T).view(1, T) < vis.view(T, 1)  # (T, T)
        for l in range(self.c["depth"]):
            x = self.layer(l, x, ada[l], pos_p, pos_q, lambda q, k, v: self.attend(q, k, v, mask))
        return self.head(x, head_ada).float()

    def upsample(self, prev_codes, s_in, s_out):
        """Latents of a (B, s_in^2) grid of codes, bilinearly resized (half-pixel centres) to
        (B, s_out^2, Dl)."""
        B, Dl = prev_codes.shape[0], self.codebook.shape[1]
        grid = self.codebook[prev_codes].float().view(B, s_in, s_in, Dl).permute(0, 3, 1, 2)
        up = F.interpolate(grid, size=(s_out, s_out), mode="bilinear", align_corners=False)
        return up.permute(0, 2, 3, 1).reshape(B, s_out * s_out, Dl).to(self.dtype)

    # -- KV-cached sampling (the sampler) --

    def plan_steps(self, layout):
        """Per step: its slot range, the index tensors of its slots and its attention mask."""
        steps = []
        for s in range(layout.steps):
            blk = s + 1
            t0 = 0 if s == 0 else layout.block_start[blk]
            t1 = layout.block_end[blk]
            k = layout.block_scale[blk]
            slots = range(max(t0, 1), t1)  # image slots (the class token is not drawn)
            first_of_scale = layout.block_scale[blk - 1] != k
            qs = [layout.prev_pos_of[t] for t in slots]
            steps.append({
                "t0": t0, "t1": t1, "k": k, "first_of_scale": first_of_scale,
                "with_class": s == 0,
                "p": torch.tensor([layout.pos_of[t] for t in slots]),
                "q": torch.tensor([max(q, 0) for q in qs]),
                "v_learned": all(q < 0 for q in qs),
                "pos_p": torch.tensor([layout.position_index(t) for t in range(t0, t1)]),
                "pos_q": torch.tensor([layout.fed_position_index(t) for t in range(t0, t1)]),
                # The class token sees only itself; every other slot its block and the earlier.
                "mask": (torch.arange(t1).view(1, t1) < torch.tensor(
                    [1 if t == 0 else t1 for t in range(t0, t1)]).view(-1, 1)) if s == 0 else None,
            })
        return steps

    def sample(self, labels, layout, guidance=2.0, guidance_start=5, temperature=1.0, top_k=0,
               top_p=1.0, generator=None, forced=None, plan=None, cache=None):
        """Codes (B, L) sampled for `labels` (B), one forward per block against a KV cache;
        with CFG the null-class rows run beside the conditional ones. `forced` (B, L): feed these
        codes instead of drawing (teacher forcing through the cache); returns (codes, the
        conditional logits (B, T, K) float32 when forced else None)."""
        B, T, depth = labels.shape[0], layout.length, self.c["depth"]
        guided = guidance != 0
        R = 2 * B if guided else B
        rows = torch.cat([labels, torch.full((B,), self.c["classes"])]) if guided else labels
        c_emb, ada, head_ada = self.conditioning(rows)
        plan = plan or self.plan_steps(layout)
        # (depth, R, H, T, hd): keys (after RoPE) and values of every slot run so far.
        shape = (depth, R, self.H, T, self.hd)
        if cache is None or cache[0].shape != shape:
            cache = (torch.empty(shape, dtype=self.dtype), torch.empty(shape, dtype=self.dtype))
        k_cache, v_cache = cache
        grid = torch.zeros(B, T - 1, dtype=torch.long)  # codes so far, raster per scale
        offs = layout.scale_offset
        logits_out = torch.zeros(B, T, self.c["vocab"]) if forced is not None else None
        up = None
        for s, st in enumerate(plan):
            t0, t1, k = st["t0"], st["t1"], st["k"]
            side = layout.scales[k]
            if k > 0 and st["first_of_scale"]:
                sp = layout.scales[k - 1]
                up = self.upsample(grid[:, offs[k - 1] : offs[k - 1] + sp * sp], sp, side)
            u_lat = up[:, st["p"]] if k > 0 else None
            v_lat = None if st["v_learned"] else self.codebook[grid[:, offs[k] + st["q"]]]
            pos_p, pos_q = st["pos_p"], st["pos_q"]
            img_p = pos_p[1:] if st["with_class"] else pos_p
            img_q = pos_q[1:] if st["with_class"] else pos_q
            x = self.inputs(B, u_lat, v_lat, None, None, img_p, img_q)  # (B, m', W)
            if guided:
                x = torch.cat([x, x])  # the null-class rows share the inputs
            if st["with_class"]:
                x = torch.cat([c_emb.unsqueeze(1), x], dim=1)  # (R, m, W)
            mask = st["mask"]
            for l in range(depth):
                kc, vc = k_cache[l], v_cache[l]

                def attend(q, k_new, v_new):
                    kc[:, :, t0:t1] = k_new
                    vc[:, :, t0:t1] = v_new
                    return self.attend(q, kc[:, :, :t1], vc[:, :, :t1], mask)

                x = self.layer(l, x, [a for a in ada[l]], pos_p, pos_q, attend)
            if st["with_class"]:
                x = x[:, 1:]
            logits = self.head(x, head_ada).float()  # (R, m', K)
            cond = logits[:B]
            w = 0.0 if s < guidance_start else guidance
            z = cond + w * (cond - logits[B:]) if guided and w != 0 else cond
            at = offs[k] + st["p"]
            if forced is not None:
                logits_out[:, max(t0, 1) : t1] = cond
                grid[:, at] = forced[:, at]
            else:
                grid[:, at] = draw(z, temperature, top_k, top_p, generator)
        return grid, logits_out


def draw(z, temperature, top_k, top_p, generator):
    """One code per row of guided logits z (..., K): temperature (0: greedy), top-k, top-p
    (the fewest most likely codes whose mass reaches p), then a multinomial draw."""
    shape, K = z.shape[:-1], z.shape[-1]
    z = z.reshape(-1, K).double()
    if temperature <= 0:
        return z.argmax(-1).view(shape)
    z = z / temperature
    if 0 < top_k < K:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        probs = torch.softmax(sorted_z, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the more likely codes
        drop = before >= top_p
        drop[:, 0] = False
        z = z.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))
    probs = torch.softmax(z, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).view(shape)


# ---- commands ---------------------------------------------------------------------------------


def parse_steps(text):
    values = [int(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def command_logits(a):
    config, params, codebook, order, _ = load_checkpoint(a.model)
    layout = Layout(config["scales"], parse_steps(a.steps_per_scale), a.order or order)
    data = np.load(a.codes)
    codes = torch.from_numpy(data["codes"].astype(np.int64))  # (B, L)
    labels = torch.from_numpy(data["labels"].astype(np.int64))  # (B)
    model = Reference(config, params, codebook, PRECISIONS[a.precision])
    with torch.inference_mode():
        full = model.teacher_forced(codes, labels, layout)
        _, cached = model.sample(labels, layout, guidance=0, forced=codes)
    np.savez(a.out, teacher_forced=full.numpy(), cached=cached.numpy())


def command_sample(a):
    config, params, codebook, order, tok = load_checkpoint(a.model)
    layout = Layout(config["scales"], parse_steps(a.steps_per_scale), a.order or order)
    labels = torch.tensor([c for c in range(config["classes"]) for _ in range(a.per_class)])
    model = Reference(config, params, codebook, PRECISIONS[a.precision])
    g = torch.Generator().manual_seed(a.seed)
    with torch.inference_mode():
        codes = torch.cat([model.sample(labels[i : i + a.batch], layout, a.cfg, a.cfg_start,
                                        a.temperature, a.top_k, a.top_p, g)[0]
                           for i in range(0, len(labels), a.batch)])
    out = {"codes": codes.numpy().astype(np.int32), "labels": labels.numpy().astype(np.int32)}
    if tok["format"] == "checkerboard-patch-vq":  # paste the final scale's code patches
        s, p = config["scales"][-1], tok["patch"]
        last = codes[:, layout.scale_offset[-1] :]  # (n, s*s)
        patches = codebook[last].view(-1, s, s, p, p, 3).permute(0, 1, 3, 2, 4, 5)
        img = (patches.reshape(-1, s * p, s * p, 3) * 255).round().clamp(0, 255)
        out["arr_0"] = img.numpy().astype(np.uint8)
    np.savez(a.out, **out)


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Presets of `checkerboard bench sample` (src/bench/train_bench.ts BENCH_SETUPS, config.ts).
BENCH_PRESETS = {
    "tiny": dict(depth=4, width=256, heads=4, vocab=512, latentDim=48, classes=10,
                 scales=[1, 2, 4, 8]),
    "S": dict(depth=12, width=512, heads=16, vocab=4096, latentDim=8, classes=1000,
              scales=[1, 2, 4, 8, 16]),
    "L": dict(depth=20, width=1024, heads=16, vocab=4096, latentDim=8, classes=1000,
              scales=[1, 2, 4, 8, 16]),
}


def command_bench(a):
    config = dict(BENCH_PRESETS[a.preset], mlpRatio=4, ropeMixLayers=0)
    layout = Layout(config["scales"], parse_steps(a.steps_per_scale), "checkerboard")
    params = random_params(config)
    codebook = torch.rand(config["vocab"], config["latentDim"]) - 0.5
    results = []
    for precision in a.precision.split(","):
        model = Reference(config, params, codebook, PRECISIONS[precision], a.attention,
                          a.linear if precision == "fp32" else "aten")
        plan = model.plan_steps(layout)
        for batch in [int(b) for b in a.batches.split(",")]:
            labels = torch.tensor([(i * 7919) % config["classes"] for i in range(batch)])
            g = torch.Generator().manual_seed(0)
            shape = (config["depth"], 2 * batch if a.cfg else batch, model.H, layout.length,
                     model.hd)
            cache = (torch.empty(shape, dtype=model.dtype), torch.empty(shape, dtype=model.dtype))

            def run():
                start = time.perf_counter()
                model.sample(labels, layout, a.cfg, a.cfg_start, 1.0, 0, 1.0, g, plan=plan,
                             cache=cache)
                return (time.perf_counter() - start) / batch

            with torch.inference_mode():
                run()  # warm-up: allocator, first touches, oneDNN primitives
                times = sorted(run() for _ in range(a.repeats))
            results.append({"precision": precision, "batch": batch,
                            "secondsPerImage": times[len(times) // 2] if len(times) % 2 else
                            (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2,
                            "min": times[0], "max": times[-1]})
            if not a.json:
                r = results[-1]
                print(f"torch {precision} {a.preset} batch {batch}: "
                      f"{r['secondsPerImage'] * 1000:.1f} ms/image "
                      f"(min {r['min'] * 1000:.1f}, max {r['max'] * 1000:.1f})", flush=True)
    if a.json:
        print(json.dumps({"engine": "torch", "torch": torch.__version__, "preset": a.preset,
                          "threads": torch.get_num_threads(),
                          "ompWaitPolicy": os.environ["OMP_WAIT_POLICY"], "steps": layout.steps,
                          "attention": a.attention, "linear": a.linear, "cfg": a.cfg, "results": results}))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    sub = ap.add_subparsers(dest="command", required=True)

    def plan_options(p):
        p.add_argument("--steps-per-scale", default="4", help="P, or P1,P2,... per scale")
        p.add_argument("--order", default=None, help="default: the checkpoint's")
        p.add_argument("--precision", default="fp32", choices=PRECISIONS)

    lg = sub.add_parser("logits", help="teacher-forced and KV-cached logits of given codes")
    lg.add_argument("--model", required=True, help="checkpoint folder or its model.safetensors")
    lg.add_argument("--codes", required=True, help=".npz with codes (B, L) and labels (B)")
    lg.add_argument("--out", required=True, help=".npz to write")
    plan_options(lg)

    sm = sub.add_parser("sample", help="sample codes (and patch-VQ images) into an .npz")
    sm.add_argument("--model", required=True)
    sm.add_argument("--per-class", type=int, default=4)
    sm.add_argument("--batch", type=int, default=16)
    sm.add_argument("--cfg", type=float, default=2.0)
    sm.add_argument("--cfg-start", type=int, default=5)
    sm.add_argument("--temperature", type=float, default=1.0)
    sm.add_argument("--top-k", type=int, default=0)
    sm.add_argument("--top-p", type=float, default=1.0)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--out", required=True)
    plan_options(sm)

    bn = sub.add_parser("bench", help="seconds per sampled image of a preset, random weights")
    bn.add_argument("--preset", default="S", choices=BENCH_PRESETS)
    bn.add_argument("--steps-per-scale", default="4")
    bn.add_argument("--cfg", type=float, default=2.0)
    bn.add_argument("--cfg-start", type=int, default=5)
    bn.add_argument("--batches", default="1,16")
    bn.add_argument("--precision", default="fp32,bf16", help="comma list of fp32, bf16")
    bn.add_argument("--attention", default="matmul", choices=["matmul", "sdpa"])
    bn.add_argument("--linear", default="aten", choices=["aten", "mkldnn"],
                    help="fp32 matmuls: ATen's addmm (BLAS) or oneDNN's inner product")
    bn.add_argument("--repeats", type=int, default=3)
    bn.add_argument("--json", action="store_true")

    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    {"logits": command_logits, "sample": command_sample, "bench": command_bench}[a.command](a)


if __name__ == "__main__":
    main(sys.argv[1:])
