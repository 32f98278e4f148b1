"""Vectorised ray casting of sphere, yawed cube, vertical cylinder and cone over a ground plane, in torch.

A batch of scenes is packed into one (B, K, F) tensor. The (ray, object) pairs inside each object's conservative
screen rectangle (``culling``) get the exact intersection. Only element-wise arithmetic (no reductions over varying
shapes, no transcendental functions) touches a pair, and per-pixel choices use order-independent ``amin``/``amax``
scatters, so a scene renders to the same bits whatever shares its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from addp_agent.data.scenes3d.culling import SHAPE_CODES, Pairs
from addp_agent.data.scenes3d.sampling import Scene

# packed object columns
CX, CY, CZ, SHAPE, RADIUS, HALF, COS, SIN = range(8)
FIELDS = 8
EPS = 1e-4  # smallest accepted ray parameter (metres along a camera ray of unit camera-z)

Vec = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pack_objects(scenes: list[Scene], device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, K, FIELDS) float32 (padding rows are zeros: no pair refers to them)."""
    width = max(len(s.objects) for s in scenes)
    rows = []
    for scene in scenes:
        row = [[o.x, o.y, o.half_height, SHAPE_CODES[o.shape], o.radius, o.half_height, math.cos(o.yaw),
                math.sin(o.yaw)] for o in scene.objects]
        rows.append(row + [[0.0] * FIELDS] * (width - len(row)))
    return torch.tensor(rows, dtype=torch.float64, device=device).float()


def _dot(a: Vec, b: Vec) -> torch.Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _nonzero_dir(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d >= 0, d.clamp_min(1e-12), d.clamp_max(-1e-12))


def _sphere(o: Vec, d: Vec, p: torch.Tensor) -> tuple[torch.Tensor, Vec]:
    w = (o[0] - p[CX], o[1] - p[CY], o[2] - p[CZ])
    r = p[RADIUS]
    a = _dot(d, d)
    b = _dot(w, d) / a
    h = (w[0] - b * d[0], w[1] - b * d[1], w[2] - b * d[2])
    disc = r * r - _dot(h, h)
    s = torch.sqrt(disc.clamp_min(0) / a)
    t = torch.where(-b - s > EPS, -b - s, -b + s)
    t = torch.where((disc >= 0) & (t > EPS), t, torch.inf)
    n = tuple((w[i] + t * d[i]) / r for i in range(3))
    return t, n  # type: ignore[return-value]


def _box(o: Vec, d: Vec, p: torch.Tensor) -> tuple[torch.Tensor, Vec]:
    c, s = p[COS], p[SIN]
    wx, wy, wz = o[0] - p[CX], o[1] - p[CY], o[2] - p[CZ]
    local_o = (c * wx + s * wy, c * wy - s * wx, wz)
    local_d = (c * d[0] + s * d[1], c * d[1] - s * d[0], d[2])
    half = (p[RADIUS], p[RADIUS], p[HALF])
    near, far = [], []
    for k in range(3):
        inv = 1.0 / _nonzero_dir(local_d[k])
        t1, t2 = (-half[k] - local_o[k]) * inv, (half[k] - local_o[k]) * inv
        near.append(torch.minimum(t1, t2))
        far.append(torch.maximum(t1, t2))
    t_near = torch.maximum(torch.maximum(near[0], near[1]), near[2])
    t_far = torch.minimum(torch.minimum(far[0], far[1]), far[2])
    t = torch.where(t_near > EPS, t_near, t_far)
    t = torch.where((t_near <= t_far) & (t > EPS), t, torch.inf)
    axis = [(near[k] == t_near).float() * -torch.sign(local_d[k]) for k in range(3)]
    axis[1] = axis[1] * (near[0] != t_near)
    axis[2] = axis[2] * (near[0] != t_near) * (near[1] != t_near)
    n = (c * axis[0] - s * axis[1], s * axis[0] + c * axis[1], axis[2])
    return t, n


def _closest(candidates: list[tuple[torch.Tensor, Vec]]) -> tuple[torch.Tensor, Vec]:
    t, n = candidates[0]
    for t_k, n_k in candidates[1:]:
        better = t_k < t
        t = torch.where(better, t_k, t)
        n = tuple(torch.where(better, n_k[i], n[i]) for i in range(3))  # type: ignore[assignment]
    return t, n


def _caps(w: Vec, d: Vec, radius: torch.Tensor, levels: list[tuple[torch.Tensor, float]]
          ) -> list[tuple[torch.Tensor, Vec]]:
    """Horizontal discs at local heights ``levels`` (height, normal z sign), radius ``radius`` about the axis."""
    out = []
    zero = torch.zeros_like(radius)
    dz = _nonzero_dir(d[2])
    for height, sign in levels:
        t = (height - w[2]) / dz
        x, y = w[0] + t * d[0], w[1] + t * d[1]
        t = torch.where((x * x + y * y <= radius * radius) & (t > EPS), t, torch.inf)
        out.append((t, (zero, zero, zero + sign)))
    return out


def _cylinder(o: Vec, d: Vec, p: torch.Tensor) -> tuple[torch.Tensor, Vec]:
    w = (o[0] - p[CX], o[1] - p[CY], o[2] - p[CZ])
    r, half = p[RADIUS], p[HALF]
    a = (d[0] * d[0] + d[1] * d[1]).clamp_min(1e-12)
    b = (w[0] * d[0] + w[1] * d[1]) / a
    hx, hy = w[0] - b * d[0], w[1] - b * d[1]
    disc = r * r - (hx * hx + hy * hy)
    s = torch.sqrt(disc.clamp_min(0) / a)
    zero = torch.zeros_like(r)
    candidates = []
    for t in (-b - s, -b + s):
        z = w[2] + t * d[2]
        t = torch.where((disc >= 0) & (z.abs() <= half) & (t > EPS), t, torch.inf)
        candidates.append((t, ((w[0] + t * d[0]) / r, (w[1] + t * d[1]) / r, zero)))
    return _closest(candidates + _caps(w, d, r, [(half, 1.0), (-half, -1.0)]))


def _cone(o: Vec, d: Vec, p: torch.Tensor) -> tuple[torch.Tensor, Vec]:
    """Apex up at the top of the bounding box, base disc on the ground."""
    r, half = p[RADIUS], p[HALF]
    w = (o[0] - p[CX], o[1] - p[CY], o[2] - p[CZ] - half)  # relative to the apex
    slope = r / (2 * half)
    k2 = slope * slope
    a = d[0] * d[0] + d[1] * d[1] - k2 * d[2] * d[2]
    a = torch.where(a.abs() < 1e-9, torch.where(a >= 0, 1e-9, -1e-9), a)
    b = w[0] * d[0] + w[1] * d[1] - k2 * w[2] * d[2]
    c = w[0] * w[0] + w[1] * w[1] - k2 * w[2] * w[2]
    disc = b * b - a * c
    s = torch.sqrt(disc.clamp_min(0))
    candidates = []
    for t in ((-b - s) / a, (-b + s) / a):
        q = (w[0] + t * d[0], w[1] + t * d[1], w[2] + t * d[2])
        t = torch.where((disc >= 0) & (q[2] <= 0) & (q[2] >= -2 * half) & (t > EPS), t, torch.inf)
        g = (q[0], q[1], -k2 * q[2])
        norm = torch.sqrt(_dot(g, g)).clamp_min(1e-12)
        candidates.append((t, (g[0] / norm, g[1] / norm, g[2] / norm)))
    return _closest(candidates + _caps(w, d, r, [(-2 * half, -1.0)]))


_SHAPES = (_sphere, _box, _cylinder, _cone)


def intersect(o: Vec, d: Vec, p: torch.Tensor, groups: list[tuple[int, int, int]]) -> tuple[torch.Tensor, Vec]:
    """Exact first hit of rays ``o + t·d`` (components (M,)) with objects ``p`` (M, FIELDS), the pairs ordered by
    shape in ``groups`` runs (code, start, stop): t (inf: miss) and unit normals (components (M,))."""
    rows = p.T.contiguous()
    ts, ns = [], []
    for code, start, stop in groups:
        part = slice(start, stop)
        t, n = _SHAPES[code](tuple(c[part] for c in o), tuple(c[part] for c in d), rows[:, part])
        ts.append(t)
        ns.append(n)
    if not ts:
        empty = o[0][:0]
        return empty, (empty, empty, empty)
    if len(ts) == 1:
        return ts[0], ns[0]
    return torch.cat(ts), tuple(torch.cat([n[c] for n in ns]) for c in range(3))  # type: ignore[return-value]


@dataclass
class PrimaryHits:
    """Per pixel (B, P): z-depth (inf: nothing hit), object index (-1 ground, -2 nothing), unit normal components;
    per object (B, K): visible pixels and pixels covered with every other object removed."""

    depth: torch.Tensor
    obj: torch.Tensor
    normal: Vec
    visible: torch.Tensor
    coverage: torch.Tensor


def _gather(components: Vec, flat: torch.Tensor) -> Vec:
    return tuple(c.reshape(-1)[flat] for c in components)  # type: ignore[return-value]


def cast_primary(origin: torch.Tensor, rays: Vec, objects: torch.Tensor, pairs: Pairs) -> PrimaryHits:
    """Nearest surface along every camera ray (components (B, P) with camera-z 1, so t is the z-depth).

    ``origin`` is (B, 3); ``pairs`` (scene, pixel, object) must include every pair whose ray can meet the object
    (see ``culling``).
    """
    batch, pixels = rays[0].shape
    count = objects.shape[1]
    b, pix, k = pairs.scene, pairs.pixel, pairs.obj
    flat = b * pixels + pix
    t, n = intersect(tuple(origin[b, c] for c in range(3)), _gather(rays, flat),  # type: ignore[arg-type]
                     objects.reshape(-1, FIELDS)[b * count + k], pairs.groups)
    hit = torch.isfinite(t)
    coverage = torch.bincount((b * count + k)[hit], minlength=batch * count).view(batch, count)
    nearest = torch.full((batch * pixels,), torch.inf, dtype=t.dtype, device=t.device)
    nearest = nearest.scatter_reduce(0, flat, t, "amin")
    dz = rays[2]
    ground = torch.where(dz < 0, -origin[:, 2:3] / dz.clamp_max(-1e-12), torch.inf).reshape(-1)
    on_object = nearest < ground
    win = hit & (t == nearest[flat]) & on_object[flat]
    obj = torch.full((batch * pixels,), -1, dtype=torch.long, device=t.device)
    obj = obj.scatter_reduce(0, flat[win], k[win], "amax")
    obj = torch.where(on_object | torch.isfinite(ground), obj, -2)
    chosen = win & (k == obj[flat])
    target = flat[chosen]
    normal = []
    for c, rest in enumerate((0.0, 0.0, 1.0)):
        component = torch.full((batch * pixels,), rest, dtype=t.dtype, device=t.device)
        component[target] = n[c][chosen]
        normal.append(component.view(batch, pixels))
    depth = torch.where(on_object, nearest, ground)
    ids = torch.where(obj >= 0, obj + torch.arange(batch, device=obj.device).repeat_interleave(pixels) * count,
                      batch * count)
    visible = torch.bincount(ids, minlength=batch * count + 1)[:-1].view(batch, count)
    return PrimaryHits(depth.view(batch, pixels), obj.view(batch, pixels), (normal[0], normal[1], normal[2]),
                       visible, coverage)


def cast_shadows(points: Vec, normals: Vec, light: torch.Tensor, objects: torch.Tensor, lit: torch.Tensor,
                 pairs: Pairs) -> torch.Tensor:
    """Which ``lit`` surface points (components (B, P)) have an object between them and the directional ``light``
    (B, 3). ``pairs`` (scene, pixel, object) must include every pixel the object can shade (see ``culling``)."""
    batch, pixels = lit.shape
    count = objects.shape[1]
    pairs = pairs.subset(lit.reshape(-1)[pairs.scene * pixels + pairs.pixel])
    b, k = pairs.scene, pairs.obj
    flat = b * pixels + pairs.pixel
    start = tuple(p + 1e-3 * n for p, n in zip(_gather(points, flat), _gather(normals, flat), strict=True))
    t, _ = intersect(start, tuple(light[b, c] for c in range(3)),  # type: ignore[arg-type]
                     objects.reshape(-1, FIELDS)[b * count + k], pairs.groups)
    shadow = torch.zeros(batch * pixels, dtype=torch.bool, device=lit.device)
    shadow[flat[torch.isfinite(t)]] = True
    return shadow.view(batch, pixels)
