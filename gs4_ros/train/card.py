"""The model card next to the shipped weights, written from the training run's own figures
(and, after `gs4 train eval --card`, its ablation table), never by hand."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

EVAL_MARK = "## Evaluation"


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(d.items())) if d else "n/a"


def _chunk_options(chunk: dict, fallback: dict) -> dict:
    from ..cli.train import options_from_command

    return options_from_command(chunk.get("command", "")) or fallback


def _class_weights(opts: dict) -> str:
    from .fit import FitOptions   # a summary written before --class-power existed used the default

    p = float(opts.get("class_power", FitOptions.class_power))
    return "inverse-sqrt class-frequency weights" if p == 0.5 else f"class-frequency^-{p:g} weights"


def _ensemble_members(ens: dict, indent: str) -> list:
    """One line per file an ensemble was made from; a file that was an ensemble itself
    lists its own, indented."""
    out = []
    for m in ens["members"]:
        out.append(f"{indent}- `{m['file']}`: {m['chunks']} chunks, the last `{m['last_chunk_command']}`"
                   + (", an ensemble of:" if m.get("ensemble") else ""))
        if m.get("ensemble"):
            out += _ensemble_members(m["ensemble"], indent + "  ")
    return out


def _seed_span(seeds) -> str:
    """[960, 961, 962, 970] -> '960-962, 970'."""
    runs: list = []
    for x in sorted(int(v) for v in seeds):
        if runs and x == runs[-1][1] + 1:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def _split_at_eval(txt: str) -> Tuple[str, str]:
    """(the card before its evaluation section, the sections after it). Those after are
    notes written since (on chunks, on measurements): history, true of the weights they
    name, so neither a new table nor a new card drops them. No section: (txt, "")."""
    if EVAL_MARK not in txt:
        return txt, ""
    i = txt.index(EVAL_MARK)
    nxt = txt.find("\n## ", i + len(EVAL_MARK))
    return txt[:i], ("" if nxt < 0 else txt[nxt + 1:])


def _calibration(cal: Optional[dict]) -> List[str]:
    """The card's lines for `gs4 train calibrate` (train/calibrate.py): the factor and the
    grid it was chosen from."""
    if not cal:
        return []
    out = [f"- Scale calibration: every predicted Gaussian scale x{cal['factor']:g} (folded into the Gaussian "
           f"head's bias), by `{cal.get('command') or 'gs4 train calibrate'}`"]
    if cal.get("grid"):
        out[0] += (f": {cal['rule']}, the networks' `{cal['variant']}` path on validation rooms "
                   f"{_seed_span(cal['seeds'])} ({cal['frames']} frames each, {cal.get('device')}):")
        out += [f"  - x{f}: held-out PSNR {g['heldout_psnr']:.3f} dB, depth L1 {g['heldout_depth_l1_cm']:.3f} cm, "
                f"map mIoU {100 * g['miou']:.1f}%, {g['num_gaussians']:.0f} Gaussians, ATE {g['ate_rmse_cm']:.2f} cm"
                for f, g in cal["grid"].items()]
    return out


def write_card(path, summary: dict, weights_path=None):
    path = Path(path)
    notes = _split_at_eval(path.read_text())[1] if path.is_file() else ""
    chunks = summary.get("chunks", [])

    def last(stage: str) -> Optional[int]:
        """Index of the last chunk that ran `stage` (a key counting its steps), if any."""
        return next((i for i in reversed(range(len(chunks))) if chunks[i].get(stage)), None)

    # Each stage is described by the last chunk that ran it: a later semantic-only chunk
    # has its own batch and data options, and its own final losses.
    i_pred, i_sem, i_ref = last("predictor_steps"), last("semantic_steps"), last("refiner_clips")
    o = (_chunk_options(chunks[i_pred], summary.get("options", {})) if i_pred is not None
         else summary.get("options", {}))
    # The chunk that writes the card has its options in the summary, recorded command or not.
    so = (_chunk_options(chunks[i_sem], summary.get("options", {}) if i_sem == len(chunks) - 1 else {})
          if i_sem is not None else {})
    devices = {}
    for c in chunks:
        devices.setdefault(c.get("device", "not recorded"), []).append(str(c["chunk"]))
    size = Path(weights_path).stat().st_size / 2 ** 20 if weights_path and Path(weights_path).is_file() else float("nan")
    lines = [
        "# gs4_ros networks: model card",
        "",
        "Gaussian prediction model (RGB-D backbone, Gaussian head, ScanNet-20 semantic head) and",
        "Gaussian refinement network (kNN local attention), trained by `gs4 train fit` in this",
        "repository. This card is written by the training script from its own figures.",
        "",
        "## Training",
        "",
    ]
    cmds = [c.get("command") for c in summary.get("chunks", [])]
    if len(cmds) > 1 and all(cmds):
        lines += ["- Commands, one per chunk, in order:"] + [f"  {i}. `{c}`" for i, c in enumerate(cmds)]
    else:
        lines.append(f"- Command: `{summary.get('command') or '(called from Python)'}`")
    lines += [
        "- Device: "
        + ("; ".join(f"{d} (chunk {', '.join(i)})" for d, i in devices.items()) or str(summary.get("device")))
        + f", renderer {summary.get('renderer')} (last chunk); {summary.get('total_seconds', 0):.0f} s of training in "
        f"{len(chunks)} chunk(s)",
        f"- Steps: {summary.get('total_predictor_steps')} predictor steps (batch {o.get('batch')}), "
        f"{summary.get('total_refiner_clips')} refiner clips"
        + (f", {summary['total_semantic_steps']} semantic-head steps ({so.get('sem_batch')} mirrored, jittered"
           f" labelled frames each, {_class_weights(so)}, "
           + (f"the backbone trained too, its Gaussian and latent-feature heads' outputs held to the chunk's start"
              f" (`--sem-backbone`, distill weight {so['distill_weight']:g}), the rest frozen"
              if so.get("sem_backbone") else "the rest of the network frozen")
           + ("; the last semantic chunk drew them from the frozen part's outputs kept once per frame,"
              " `--sem-cache`" if chunks[i_sem].get("sem_cache_frames") or so.get("sem_cache") else "") + ")"
           if summary.get("total_semantic_steps") else ""),
        f"- Data: {len(summary.get('training_sequences', []))} sequences: synthetic seeds >= 1000 "
        f"({o.get('frames')} frames each, every {o.get('step')}th frame of the path, {o.get('width')}x{o.get('height')}"
        + (", in the chunks that trained the predictor; semantic-only chunks as their commands say)" if so else ")")
        + (f"; real 7-Scenes frames {o.get('real_frames')} with rendering losses only (p={o.get('p_real')})"
           if o.get("real") else "; no real frames"),
        "- Losses: colour MSE + 0.2 (1 - SSIM) + 0.5 surface-depth L1 (m) + 0.1 (1 - alpha) + 0.1 CE on rendered"
        f" semantics + {o.get('token_weight', 0.1):g} per-token CE ({_class_weights(o)}),"
        " in the input view and two overlapping views (co-visible pixels)"
        + ("; colour losses on the view blended over each surface (`--blend`, as the pipeline renders it)"
           if o.get("blend") else "; colour losses on the plain front-to-back composite")
        + (f"; the per-token CE also on {o['sem_batch']} more frames per step, mirrored at random and with"
           " jittered exposure and white balance" if o.get("sem_batch") else "")
        + "; refiner: rendering losses on clips of "
        + "/".join(str(x) for x in o.get("clip_lengths", [])) + " frames",
        f"- Token strides per step drawn from {o.get('strides')}; batch {o.get('batch')}, AdamW lr {o.get('lr')} "
        "(warm-up, cosine decay over the chunk)",
        f"- Weights file: {Path(weights_path).name if weights_path else 'gs4_nets.pt'} ({size:.2f} MB)",
    ]
    ens = summary.get("ensemble")
    if ens:
        lines += [f"- Semantic head: the mean log-probability of {ens.get('heads', len(ens['members']))} heads on one "
                  f"backbone, made by `{ens.get('command') or 'gs4 train ensemble'}` from these weights files (the "
                  "first kept whole, the others' semantic parts added):"]
        lines += _ensemble_members(ens, "  ")
    lines += _calibration(summary.get("scale_calibration"))
    lines += [
        "",
        "| chunk | s | predictor steps | semantic steps | refiner clips | predictor (semantic-only chunks: "
        "semantic-head) loss first -> final | refiner loss first -> final |",
        "|---|---|---|---|---|---|---|",
    ]
    def span(c, stage):   # a stage the chunk did not run has no losses
        first, final = c.get(stage + "_first", {}), c.get(stage + "_final", {})
        return f"{first['loss']:.4f} -> {final['loss']:.4f}" if "loss" in first and "loss" in final else "-"

    for c in chunks:
        lines.append(f"| {c['chunk']} | {c['seconds']:.0f} | {c['predictor_steps']} | {c.get('semantic_steps', 0)} | "
                     f"{c['refiner_clips']} | {span(c, 'predictor')} | {span(c, 'refiner')} |")

    def final(i, key):
        return _fmt(chunks[i].get(key, {})) if i is not None else _fmt({})

    lines += ["", f"Final predictor losses: {final(i_pred, 'predictor_final')}"]
    if i_sem is not None:   # a semantic-only chunk records its head's loss under predictor_final
        lines += ["", f"Final semantic-head loss: {final(i_sem, 'predictor_final')}"]
    for c in chunks:        # --val-seeds: which head the chunk kept, and what it gave up
        v = c.get("validation")
        if v and v.get("scores"):
            kept = dict((int(st), m) for st, m in v["scores"])[v["kept_step"]]
            lines += ["", f"Validation, chunk {c['chunk']}: token mIoU on rooms {_seed_span(v['seeds'])} "
                      f"({v['frames']} frames, unaugmented, stride 8) {v['scores'][0][1]:.4f} at the start, "
                      f"{kept:.4f} at step {v['kept_step']} (kept), {v['scores'][-1][1]:.4f} at the last "
                      f"step {v['scores'][-1][0]}"]
    lines += ["", f"Final refiner losses: {final(i_ref, 'refiner_final')}", ""]
    # New weights make any earlier table stale: the evaluation section starts empty.
    lines.append(f"{EVAL_MARK}\n\n(not run yet for these weights: `gs4 train eval --card {path}` fills it in)\n")
    if notes:
        lines.append(notes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def append_eval(path, table_md: str, command: str, note: Optional[str] = None):
    """Replace the card's evaluation section with this table; the sections after it (notes
    on chunks and measurements, written since) stay."""
    path = Path(path)
    txt = path.read_text() if path.is_file() else "# gs4_ros networks: model card\n\n"
    txt, after = _split_at_eval(txt)
    sec = [EVAL_MARK, "", f"Command: `{command}`", ""]
    if note:
        sec += [note, ""]
    sec += [table_md, ""]
    path.write_text(txt + "\n".join(sec) + ("\n" + after if after else ""))
