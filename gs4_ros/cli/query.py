"""`gs4 query`: ask a saved map for the Gaussians that match a text, from the shell.

The map's PLY carries its open-vocabulary bank and the name of the encoder that filled it
(io/ply.py), so the same text gives here what it gives the running node's ~/query.
"""
from __future__ import annotations

import json

import numpy as np


def register(sub):
    p = sub.add_parser("query", help="find the Gaussians of a saved map that match a text (open vocabulary)",
                       description="Score a map's open-vocabulary bank against a text and report the "
                                   "Gaussians that match: how many, where, which bank entries.")
    p.add_argument("map", help="map PLY written by gs4 run / gs4_node (~/save_map)")
    p.add_argument("text", nargs="+", help="what to look for, e.g. couch, 'something to sit on', 'white door'")
    p.add_argument("--threshold", type=float, default=None, help="relevance to match (default: the encoder's)")
    p.add_argument("--encoder", default=None, help="encoder spec (default: the one recorded in the map)")
    p.add_argument("--lexicon", default="", help="YAML {phrase: [class, ...]} for the class-space encoder")
    p.add_argument("--out", default=None, help="write the matching Gaussians to this PLY")
    p.add_argument("--voxel", type=float, default=0.1, help="matches whose voxels of this size touch are one object (m)")
    p.add_argument("--min-gaussians", type=int, default=10, help="smaller groups are specks, not objects")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_query)


def cmd_query(args) -> int:
    from ..core.config import SCANNET20_CLASSES
    from ..core.open_vocab import load_encoder, query_map
    from ..io.ply import load_ply, save_ply
    from .main import UserError

    gm = load_ply(args.map)
    if gm.vocab is None or len(gm.vocab) == 0:
        raise UserError(f"{args.map} has no open-vocabulary bank (the map had no semantics, or was saved "
                        "with open_vocab.enabled false or by another tool)")
    names = gm.class_names or (list(SCANNET20_CLASSES) if gm.num_classes == len(SCANNET20_CLASSES)
                                            else [f"class_{i}" for i in range(gm.num_classes)])
    spec = args.encoder or gm.vocab.encoder or "classes"
    enc = load_encoder(spec, names, args.lexicon)
    if enc.dim != gm.vocab.dim:
        raise UserError(f"encoder {spec!r} makes {enc.dim}-d embeddings but {args.map}'s bank holds "
                        f"{gm.vocab.dim}-d ones")
    res = query_map(gm, gm.vocab, enc, " ".join(args.text), args.threshold, args.voxel, args.min_gaussians)
    mask = res.mask
    pts = gm.means[mask].double().numpy()
    ids = gm.bank_id[mask].numpy()
    objects = [{"gaussians": o.count, "colour": o.colour, "centroid": o.centroid.round(3).tolist(),
                "size": (o.bbox_max - o.bbox_min).round(3).tolist(), "relevance": round(o.relevance, 3)}
               for o in res.instances(gm, args.voxel, args.min_gaussians)]
    order = np.argsort(-res.entry_scores)[:5]
    entries = [{"id": int(i), "relevance": round(float(res.entry_scores[i]), 3),
                "gaussians": int((gm.bank_id == int(i)).sum())} for i in order]
    out = {"query": res.query.text, "meaning": res.query.meaning, "ignored": res.query.ignored,
           "threshold": res.threshold, "matches": res.count, "gaussians": len(gm),
           "entries_matching": int((res.entry_scores >= res.threshold).sum()), "entries": len(gm.vocab),
           "centroid": pts.mean(0).round(3).tolist() if len(pts) else None,
           "bbox_min": pts.min(0).round(3).tolist() if len(pts) else None,
           "bbox_max": pts.max(0).round(3).tolist() if len(pts) else None,
           "top_entries": entries, "entry_ids_matched": sorted({int(i) for i in ids}), "objects": objects}
    if args.out:
        gm.keep(mask)
        save_ply(args.out, gm, class_names=names)
        out["written"] = str(args.out)
    if args.json:
        print(json.dumps(out))
        return 0
    print(res.summary())
    if len(pts):
        print(f"  centroid {out['centroid']} m, box {out['bbox_min']} .. {out['bbox_max']} m (map frame)")
    for k, o in enumerate(objects):
        print(f"  object {k + 1}: {o['gaussians']} Gaussians, {o['colour']}, at {o['centroid']} m, size {o['size']} m")
    for e in entries:
        print(f"  entry {e['id']:4d}  relevance {e['relevance']:.3f}  {e['gaussians']} Gaussians")
    if args.out:
        print(f"  wrote {res.count} Gaussians to {args.out}")
    return 0
