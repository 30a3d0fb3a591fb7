"""Procedural albedo textures evaluated in surface coordinates (metres) in torch.

Textures give photometric trackers real gradients (planks, grout, stripes, book spines)
while staying deterministic. Each pattern is band-limited by the pixel footprint: detail
finer than about two pixels fades to its mean instead of aliasing into flicker.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PLAIN, WOOD, TILES, CARPET, STRIPES, FABRIC, VIEW, BOOKS, PAINTING, BRUSHED, MARBLE, PANEL = range(12)
TEXTURE_NAMES = ["plain", "wood", "tiles", "carpet", "stripes", "fabric", "view", "books",
                 "painting", "brushed", "marble", "panel"]

# Noise comes from one fixed periodic random lattice (stored 257 x 257 so the +1 neighbours
# need no wrap), looked up with integer arithmetic: cheap, and bit-identical everywhere.
_LATTICE_N = 256
_LATTICE_NP = np.pad(np.random.default_rng(0x6A5).random((_LATTICE_N, _LATTICE_N)), ((0, 1), (0, 1)),
                     mode="wrap").astype(np.float32).ravel()
_LATTICE = {}


def _lattice(device) -> torch.Tensor:
    key = str(device)
    if key not in _LATTICE:
        _LATTICE[key] = torch.from_numpy(_LATTICE_NP).to(device)
    return _LATTICE[key]


def _cell_index(ix: torch.Tensor, iy: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Row-major index into the lattice of cell (ix, iy), shifted per seed (int32 maths)."""
    return ((ix + seed * 37) & (_LATTICE_N - 1)) * (_LATTICE_N + 1) + ((iy + seed * 91) & (_LATTICE_N - 1))


def hash01(ix: torch.Tensor, iy: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Random value in [0, 1) per integer lattice cell (repeats every 256 cells)."""
    return torch.index_select(_lattice(ix.device), 0, _cell_index(ix.int(), iy.int(), seed.int()))


def value_noise(x: torch.Tensor, y: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Smooth noise in [0, 1] with one lattice cell per unit."""
    fx, fy = torch.floor(x), torch.floor(y)
    tx, ty = x - fx, y - fy
    i = _cell_index(fx.int(), fy.int(), seed.int())
    L = _lattice(x.device)
    a = torch.index_select(L, 0, i)
    b = torch.index_select(L, 0, i + (_LATTICE_N + 1))
    c = torch.index_select(L, 0, i + 1)
    d = torch.index_select(L, 0, i + (_LATTICE_N + 2))
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    ab = torch.lerp(a, b, tx)
    return torch.lerp(ab, torch.lerp(c, d, tx), ty)


def band(freq, fp: torch.Tensor) -> torch.Tensor:
    """Weight of a pattern of `freq` cycles/m at pixel footprint fp (m): 1 at 4 px per
    cycle or coarser, 0 at the Nyquist limit."""
    return ((0.5 - freq * fp) / 0.25).clamp(0, 1)


# Three octaves of the lattice noise, baked once into a periodic table of 64 x 64 base
# cells at 16 texels per cell: one bilinear lookup then replaces three noise evaluations.
_FBM_CELLS, _FBM_RES = 64, 16
_FBM_N = _FBM_CELLS * _FBM_RES
_FBM = {}


def _bake_fbm() -> np.ndarray:
    lat = np.random.default_rng(0x3D1).random((_FBM_CELLS * 4, _FBM_CELLS * 4))
    g = np.arange(_FBM_N) / _FBM_RES
    total = np.zeros((_FBM_N, _FBM_N))
    norm = 0.0
    for o, amp in enumerate((1.0, 0.5, 0.25)):
        f = 2 ** o
        period = _FBM_CELLS * f
        x = g * f + 17.0 * o
        i0 = np.floor(x).astype(int)
        t = x - i0
        t = t * t * (3 - 2 * t)
        a, b = i0 % period, (i0 + 1) % period
        L = lat[:period, :period]
        v00, v10 = L[np.ix_(a, a)], L[np.ix_(b, a)]
        v01, v11 = L[np.ix_(a, b)], L[np.ix_(b, b)]
        tx, ty = t[:, None], t[None, :]
        total += amp * ((v00 + (v10 - v00) * tx) + ((v01 + (v11 - v01) * tx) - (v00 + (v10 - v00) * tx)) * ty)
        norm += amp
    total /= norm
    total = 0.5 + (total - total.mean()) * (0.25 / total.std())  # spread like a single octave
    return np.pad(total, ((0, 1), (0, 1)), mode="wrap").astype(np.float32).ravel()


def _fbm_table(device) -> torch.Tensor:
    key = str(device)
    if key not in _FBM:
        if "cpu" not in _FBM:
            _FBM["cpu"] = torch.from_numpy(_bake_fbm())
        _FBM[key] = _FBM["cpu"].to(device)
    return _FBM[key]


def fbm(x, y, seed, fp, base_freq: float, octaves: int = 3):
    """Fractal (three-octave) noise in about [0, 1] at base_freq cycles/m, from the baked
    table; it fades to 0.5 where even the base octave is beyond the pixel's Nyquist limit."""
    u = x * (base_freq * _FBM_RES)
    v = y * (base_freq * _FBM_RES)
    fu, fv = torch.floor(u), torch.floor(v)
    tu, tv = u - fu, v - fv
    i = ((fu.int() + seed * 53) & (_FBM_N - 1)) * (_FBM_N + 1) + ((fv.int() + seed * 29) & (_FBM_N - 1))
    L = _fbm_table(x.device)
    a = torch.index_select(L, 0, i)
    b = torch.index_select(L, 0, i + (_FBM_N + 1))
    c = torch.index_select(L, 0, i + 1)
    d = torch.index_select(L, 0, i + (_FBM_N + 2))
    n = torch.lerp(torch.lerp(a, b, tu), torch.lerp(c, d, tu), tv)
    if base_freq * float(fp.max()) > 0.25:
        return 0.5 + (n - 0.5) * band(base_freq, fp)
    return n


def line(x, period, width, fp):
    """Box-filtered coverage of lines `width` wide repeated every `period` along x."""
    q = x / period
    d = (q - torch.floor(q + 0.5)).abs() * period
    fpc = fp.clamp(min=1e-5)
    hw = width / 2
    cov = torch.minimum(d + fpc / 2, hw + 0 * d) - torch.maximum(d - fpc / 2, -hw + 0 * d)
    cov = (cov / fpc).clamp(0, 1)
    w = band(1.0 / period, fp)
    mean = width / period
    return mean + (cov - mean) * w


def _mix(a, b, t):
    return a + (b - a) * t.unsqueeze(-1)


def _grain(uv, fp, seed, amount=0.05, freq=45.0):
    """Fine zero-mean grain that fades with distance."""
    n = value_noise(uv[:, 0] * freq, uv[:, 1] * freq, seed + 7)
    return ((n - 0.5) * 2 * amount * band(freq, fp)).unsqueeze(-1)


def tex_plain(uv, fs, fp, col, p, seed):
    s, t = uv[:, 0], uv[:, 1]
    strength = torch.where(p[:, 0] > 0, p[:, 0], torch.ones_like(p[:, 0]))
    low = fbm(s, t, seed, fp, 0.7, 3)
    tint = fbm(s + 31.0, t - 11.0, seed + 3, fp, 0.4, 2)
    c = _mix(col[:, 0], col[:, 1], ((tint - 0.5) * 1.5 * strength + 0.25).clamp(0, 1))
    c = c * (1 + (low - 0.5) * 0.22 * strength).unsqueeze(-1)
    return c + _grain(uv, fp, seed, 0.045)


def tex_wood(uv, fs, fp, col, p, seed):
    swap = p[:, 2] > 0.5
    s = torch.where(swap, uv[:, 1], uv[:, 0])
    t = torch.where(swap, uv[:, 0], uv[:, 1])
    pw = p[:, 0].clamp(min=0.02)
    pl = p[:, 1].clamp(min=0.1)
    row = torch.floor(t / pw)
    off = hash01(row.long(), torch.zeros_like(row.long()), seed) * pl
    colidx = torch.floor((s + off) / pl)
    tone = hash01(row.long(), colidx.long(), seed + 1)
    base = _mix(col[:, 0], col[:, 1], tone)
    warp = fbm(s * 0.8, t * 5.0, seed + 2, fp, 1.0, 3)
    g = torch.sin(2 * math.pi * (t * 38.0 + warp * 4.0 + tone * 3.0)) * 0.5 + 0.5
    base = base * (0.9 + 0.12 * (g - 0.5) * 2 * band(38.0, fp) + 0.0).unsqueeze(-1)
    knots = value_noise(s * 3.0, t * 12.0, seed + 5)
    base = base * (1 - 0.08 * ((knots - 0.75) * 4).clamp(0, 1)).unsqueeze(-1)
    gaps = torch.maximum(line(t, pw, torch.full_like(t, 0.004), fp),
                         line(s + off, pl, torch.full_like(s, 0.004), fp) * band(0.0, fp))
    return _mix(base, col[:, 2], gaps * 0.85) + _grain(uv, fp, seed, 0.03, 60.0)


def tex_tiles(uv, fs, fp, col, p, seed):
    s, t = uv[:, 0], uv[:, 1]
    size = p[:, 0].clamp(min=0.03)
    gw = p[:, 1].clamp(min=0.001)
    ix, iy = torch.floor(s / size).long(), torch.floor(t / size).long()
    jitter = hash01(ix, iy, seed)
    checker = (p[:, 2] > 0.5) & (((ix + iy) % 2) == 1)
    tile = torch.where(checker.unsqueeze(-1), col[:, 2], col[:, 0])
    tile = tile * (0.93 + 0.14 * jitter).unsqueeze(-1)
    mott = fbm(s, t, seed + 1, fp, 3.0, 3)
    tile = tile * (0.94 + 0.12 * mott).unsqueeze(-1)
    g = torch.maximum(line(s, size, gw, fp), line(t, size, gw, fp))
    return _mix(tile, col[:, 1], g) + _grain(uv, fp, seed, 0.02)


def tex_carpet(uv, fs, fp, col, p, seed):
    s, t = uv[:, 0], uv[:, 1]
    low = fbm(s, t, seed, fp, 1.5, 3)
    hi = value_noise(s * 70.0, t * 70.0, seed + 1)
    mid = value_noise(s * 18.0, t * 18.0, seed + 2)
    m = 0.5 + (hi - 0.5) * 1.3 * band(70.0, fp) + (mid - 0.5) * 0.8 * band(18.0, fp) + (low - 0.5) * 0.7
    return _mix(col[:, 0], col[:, 1], m.clamp(0, 1))


def _stripe_pattern(s, t, period, duty, fp, col):
    return _mix(col[:, 0], col[:, 1], line(s + period * duty / 2, period, duty * period, fp))


def _dots(s, t, period, duty, fp):
    cu = (s + t) * 0.7071 / period
    cv = (s - t) * 0.7071 / period
    dd = torch.sqrt((cu - torch.floor(cu) - 0.5) ** 2 + (cv - torch.floor(cv) - 0.5) ** 2) * period
    dot = ((duty * period * 0.3 - dd) / fp.clamp(min=1e-5) + 0.5).clamp(0, 1)
    w = band(1.0 / period, fp)
    return dot * w + (math.pi * (duty * 0.3) ** 2) * (1 - w)


def _lattice_pattern(s, t, period, duty, fp, col):
    dl = torch.maximum(line((s + t) * 0.7071, period, period * 0.06, fp),
                       line((s - t) * 0.7071, period, period * 0.06, fp))
    return _mix(_mix(col[:, 0], col[:, 1], dl), col[:, 2], _dots(s, t, period, duty, fp))


def _dot_pattern(s, t, period, duty, fp, col):
    return _mix(col[:, 0], col[:, 2], _dots(s, t, period, duty, fp))


def tex_stripes(uv, fs, fp, col, p, seed):
    """Wallpaper: stripes (p2 = 0), a diamond lattice with dots (1) or polka dots (2)."""
    s, t = uv[:, 0], uv[:, 1]
    period = p[:, 0].clamp(min=0.02)
    duty = p[:, 1].clamp(0.05, 0.95)
    pattern = p[:, 2].round().long()
    out = None
    for k, fn in enumerate((_stripe_pattern, _lattice_pattern, _dot_pattern)):
        m = pattern == k
        if bool(m.all()):
            out = fn(s, t, period, duty, fp, col)
            break
        if bool(m.any()):  # several wallpapers in view: evaluate each on its own pixels
            if out is None:
                out = torch.zeros_like(col[:, 0])
            i = torch.nonzero(m).squeeze(1)
            g = lambda a: torch.index_select(a, 0, i)
            out.index_copy_(0, i, fn(g(s), g(t), g(period), g(duty), g(fp), g(col)))
    low = fbm(s, t, seed, fp, 0.6, 2)
    return out * (0.93 + 0.14 * low).unsqueeze(-1) + _grain(uv, fp, seed, 0.025)


def tex_fabric(uv, fs, fp, col, p, seed):
    s, t = uv[:, 0], uv[:, 1]
    period = p[:, 0]
    plaid = period > 0
    per = period.clamp(min=0.02)
    pl = torch.maximum(line(s, per, per * 0.18, fp), line(t, per, per * 0.18, fp)) * 0.8
    thin = torch.maximum(line(s + per / 2, per, per * 0.05, fp), line(t + per / 2, per, per * 0.05, fp))
    base = torch.where(plaid.unsqueeze(-1), _mix(_mix(col[:, 0], col[:, 1], pl), col[:, 2], thin * 0.7),
                       col[:, 0])
    weave = torch.sin(s * 2 * math.pi * 110) * torch.sin(t * 2 * math.pi * 110)
    mott = fbm(s, t, seed, fp, 2.0, 4)
    base = base * (0.9 + 0.2 * mott + 0.06 * weave * band(110.0, fp)).unsqueeze(-1)
    return base + _grain(uv, fp, seed, 0.05, 80.0)


def tex_view(uv, fs, fp, col, p, seed):
    """A bright outdoor view for window panes: sky, clouds, buildings and trees."""
    s, t = uv[:, 0], uv[:, 1]
    hgt = fs[:, 1].clamp(min=0.1)
    horizon = p[:, 0].clamp(0.1, 0.8) * hgt
    sky_t = ((t - horizon) / (hgt - horizon).clamp(min=0.05)).clamp(0, 1)
    sky = _mix(col[:, 0], col[:, 2], sky_t)
    cloud = fbm(s * 0.8, t * 1.6, seed, fp, 1.2, 4)
    sky = _mix(sky, torch.ones_like(sky) * 0.98, ((cloud - 0.55) * 3).clamp(0, 0.9))
    bcol = torch.floor(s / 0.22).long()
    bh = horizon * (0.6 + 0.9 * hash01(bcol, torch.zeros_like(bcol), seed + 1))
    building = t < bh
    grey = 0.55 + 0.35 * hash01(bcol, torch.ones_like(bcol), seed + 2)
    wins = torch.maximum(line(s, torch.full_like(s, 0.055), torch.full_like(s, 0.02), fp),
                         line(t, torch.full_like(t, 0.07), torch.full_like(t, 0.025), fp))
    bld = (grey * (1 - 0.35 * wins)).unsqueeze(-1) * torch.tensor([0.95, 0.93, 0.9], device=s.device)
    trees = fbm(s * 1.5, t * 1.5, seed + 3, fp, 4.0, 4)
    tree_top = horizon * (0.35 + 0.5 * value_noise(s * 3.0, torch.zeros_like(s), seed + 4))
    tree = t < tree_top
    green = col[:, 1] * (0.6 + 0.8 * trees).unsqueeze(-1)
    out = torch.where(building.unsqueeze(-1), bld, sky)
    out = torch.where(tree.unsqueeze(-1), green, out)
    return out


def tex_books(uv, fs, fp, col, p, seed):
    """Rows of book spines of varied width, height and colour, seen edge-on."""
    s, t = uv[:, 0], uv[:, 1]
    # Book widths vary: warp s before slicing it into 3 cm slots.
    sw = s + 0.012 * torch.sin(s * 23.0 + seed.float()) + 0.01 * torch.sin(s * 61.0)
    b = torch.floor(sw / 0.03).long()
    h1, h2, h3 = (hash01(b, torch.full_like(b, k), seed) for k in (0, 1, 2))
    spine = _mix(_mix(col[:, 0], col[:, 1], h1), col[:, 2], (h2 > 0.6).float())
    spine = spine * (0.55 + 0.6 * h3).unsqueeze(-1)
    top = fs[:, 1] * (0.62 + 0.33 * hash01(b, torch.full_like(b, 3), seed))
    above = t > top
    lab = (line(t - top * 0.75, torch.full_like(t, 10.0), torch.full_like(t, 0.025), fp) *
           (hash01(b, torch.full_like(b, 4), seed) > 0.4).float())
    spine = _mix(spine, torch.full_like(spine, 0.85), lab * 0.8)
    gap = line(sw, torch.full_like(s, 0.03), torch.full_like(s, 0.003), fp)
    spine = spine * (1 - 0.6 * gap).unsqueeze(-1)
    back = col[:, 2] * 0.25
    return torch.where(above.unsqueeze(-1), back, spine) + _grain(uv, fp, seed, 0.03)


def tex_painting(uv, fs, fp, col, p, seed):
    s, t = uv[:, 0], uv[:, 1]
    n1 = fbm(s, t, seed, fp, 2.5, 4)
    n2 = fbm(s + 5.0, t - 3.0, seed + 1, fp, 4.0, 4)
    c = _mix(_mix(col[:, 0], col[:, 1], ((n1 - 0.35) * 2.5).clamp(0, 1)), col[:, 2],
             ((n2 - 0.5) * 3).clamp(0, 1))
    # A few hard-edged shapes: discs placed on a coarse lattice.
    q = 4.0
    cx, cy = torch.floor(s * q), torch.floor(t * q)
    hs = hash01(cx.long(), cy.long(), seed + 2)
    dx = s * q - cx - 0.5
    dy = t * q - cy - 0.5
    disc = ((0.35 * hs - torch.sqrt(dx * dx + dy * dy)) * 40).clamp(0, 1) * (hs > 0.55).float()
    c = _mix(c, 1 - c * 0.7, disc * band(q, fp))
    return c + _grain(uv, fp, seed, 0.05, 90.0)


def tex_brushed(uv, fs, fp, col, p, seed):
    s, t = uv[:, 0], uv[:, 1]
    streak = value_noise(s * 3.0, t * 250.0, seed)
    low = fbm(s, t, seed + 1, fp, 1.0, 2)
    c = col[:, 0] * (0.95 + 0.06 * (streak - 0.5) * 2 * band(250.0, fp) + 0.1 * (low - 0.5)).unsqueeze(-1)
    return c


def tex_marble(uv, fs, fp, col, p, seed):
    s, t = uv[:, 0], uv[:, 1]
    f = p[:, 0].clamp(min=0.5)
    warp = fbm(s, t, seed, fp, 1.5, 5)
    v = torch.sin((s + 0.6 * t) * f * 2 * math.pi + warp * 9.0).abs()
    veins = (1 - v).pow(6) * band(f * 3, fp)
    speck = value_noise(s * 120.0, t * 120.0, seed + 1)
    c = _mix(col[:, 0], col[:, 1], veins)
    return c * (0.97 + 0.08 * (speck - 0.5) * band(120.0, fp)).unsqueeze(-1)


def tex_panel(uv, fs, fp, col, p, seed):
    """Doors and cabinet fronts: raised panels outlined by grooves, optional wood grain."""
    s, t = uv[:, 0], uv[:, 1]
    W, H = fs[:, 0], fs[:, 1]
    m = p[:, 0].clamp(min=0.02)
    n = p[:, 1].clamp(min=1).round()
    big = (W > 3 * m) & (H > 3 * m)
    ph = (H - m) / n  # panel pitch (vertical)
    tl = torch.remainder(t - m / 2, ph)
    inside_s = (s > m) & (s < W - m)
    inside_t = (tl > m / 2) & (tl < ph - m / 2) & (t > m / 2) & (t < H - m / 2)
    gw = torch.full_like(s, 0.006)
    gs = torch.maximum(line(s - m, torch.full_like(s, 100.0), gw, fp), line(s - (W - m), torch.full_like(s, 100.0), gw, fp))
    gt = torch.maximum(line(tl - m / 2, torch.full_like(t, 100.0), gw, fp),
                       line(tl - (ph - m / 2), torch.full_like(t, 100.0), gw, fp))
    groove = torch.maximum(gs * inside_t.float(), gt * inside_s.float()) * big.float()
    grainy = p[:, 2] > 0.5
    g = torch.sin(2 * math.pi * (s * 30.0 + fbm(s * 4, t * 0.5, seed, fp, 1.0, 3) * 3)) * 0.5 + 0.5
    base = col[:, 0] * (1 + torch.where(grainy, 0.1 * (g - 0.5) * band(30.0, fp), torch.zeros_like(g))).unsqueeze(-1)
    base = base * (0.95 + 0.1 * fbm(s, t, seed + 1, fp, 0.8, 2)).unsqueeze(-1)
    return _mix(base, col[:, 1], groove * 0.9) + _grain(uv, fp, seed, 0.025)


_TEXTURES = [tex_plain, tex_wood, tex_tiles, tex_carpet, tex_stripes, tex_fabric, tex_view,
             tex_books, tex_painting, tex_brushed, tex_marble, tex_panel]


def albedo(kind, uv, fsize, fp, col, scale, params, seed) -> torch.Tensor:
    """Albedo [N, 3] in [0, 1] for surface points with the given per-point material."""
    out = torch.zeros(uv.shape[0], 3, device=uv.device)
    counts = torch.bincount(kind, minlength=len(_TEXTURES)).tolist()
    for k, n in enumerate(counts):
        if n == 0:
            continue
        m = torch.nonzero(kind == k).squeeze(1)
        sel = lambda x: torch.index_select(x, 0, m)
        sc = sel(scale)
        out[m] = _TEXTURES[k](sel(uv) * sc[:, None], sel(fsize) * sc[:, None], sel(fp) * sc, sel(col),
                              sel(params), sel(seed))
    return out.clamp(0, 1)
