"""`gs4 train fit` (train the networks in a time-boxed, resumable chunk), `segmenter`,
`ensemble`, `recipe` (a chain of such chunks) and `eval` (the ablation table: geometric /
prediction / + refinement)."""
from __future__ import annotations

import shlex
import sys
from typing import Optional


def register(sub):
    from ..core.nets.weights import DEFAULT_WEIGHTS
    from ..train.fit import FitOptions

    p = sub.add_parser("train", help="train the Gaussian networks or print their ablation table")
    tsub = p.add_subparsers(dest="train_command", required=True)
    d = FitOptions()
    f = tsub.add_parser("fit", help="train predictor then refiner for one chunk (see --minutes, --resume)")
    f.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="weights file (a .json and MODEL_CARD.md go beside it)")
    f.add_argument("--ckpt", default=d.ckpt, help="checkpoint for --resume")
    f.add_argument("--resume", action="store_true", help="continue from --ckpt")
    f.add_argument("--init-weights", default="", metavar="WEIGHTS",
                   help="without --resume: continue from a weights file and the .json beside it (history kept, "
                        "optimiser moments fresh), e.g. the shipped gs4_ros/weights/gs4_nets.pt")
    f.add_argument("--device", default=d.device)
    f.add_argument("--minutes", type=float, default=d.minutes, help="wall budget of this chunk, data included")
    f.add_argument("--data-minutes", type=float, default=d.data_minutes, help="budget for making synthetic data")
    f.add_argument("--stream-data", action="store_true",
                   help="start training once --workers rooms are made; the rest join until --data-minutes")
    f.add_argument("--steps", type=int, default=d.steps, help="predictor steps (0: fill the time budget)")
    f.add_argument("--refine-steps", type=int, default=d.refine_steps, help="refiner clips (0: fill the budget)")
    f.add_argument("--refine-fraction", type=float, default=d.refine_fraction)
    f.add_argument("--width", type=int, default=d.width)
    f.add_argument("--height", type=int, default=d.height)
    f.add_argument("--seeds", type=int, default=d.seeds, help="synthetic sequences at most")
    f.add_argument("--frames", type=int, default=d.frames, help="frames kept per sequence")
    f.add_argument("--step", type=int, default=d.step, help="keep every N-th frame of the camera path")
    f.add_argument("--batch", type=int, default=d.batch)
    f.add_argument("--lr", type=float, default=d.lr)
    f.add_argument("--real", default="", help="7-Scenes folder: real frames with rendering losses only")
    f.add_argument("--real-frames", default=d.real_frames)
    f.add_argument("--p-real", type=float, default=d.p_real)
    f.add_argument("--clip-lengths", default="2,4,8", help="refiner clip lengths, in training order")
    f.add_argument("--strides", default="8,8,8,8,16,32", help="token stride per step drawn from this list")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--token-weight", type=float, default=d.token_weight,
                   help="weight of the per-token semantic cross-entropy (the rendered one stays 0.1)")
    f.add_argument("--sem-batch", type=int, default=d.sem_batch,
                   help="extra labelled frames per step (mirrored, colour-jittered) for the token loss alone")
    f.add_argument("--class-power", type=float, default=d.class_power,
                   help="per-token CE class weight = the class's token count in the batch to minus this (0: plain CE)")
    f.add_argument("--workers", type=int, default=d.workers,
                   help="processes rendering the synthetic rooms on the CPU (0: one after another on --device)")
    f.add_argument("--new-refiner", action="store_true",
                   help="with --resume: keep the predictor and its optimiser, start the refiner afresh")
    f.add_argument("--sem-context", action="store_true",
                   help="give the predictor the semantic context branch (dilated + frame-pooled features; "
                        "added to resumed weights that lack it, starting at zero)")
    f.add_argument("--sem-geometry", action="store_true",
                   help="give the predictor the semantic geometry branch (each token's normal, depth and "
                        "image row beside its features; added to resumed weights that lack it, starting at zero)")
    f.add_argument("--sem-attention", action="store_true",
                   help="give the predictor the semantic attention branch (self-attention over the frame's "
                        "stride-32 tokens; added to resumed weights that lack it, starting at zero)")
    f.add_argument("--fill-holes", action="store_true",
                   help="feed the networks the depth mapping uses (holes filled by planes, core/depth_fill), "
                        "so tokens on windows and walls past the sensor's range are trained as they are mapped")
    f.add_argument("--blend", action="store_true",
                   help="colour losses on the render blended over each surface (pipeline.render_blend_*), "
                        "the view the pipeline publishes and evaluates, instead of the plain composite")
    f.add_argument("--semantic-only", action="store_true",
                   help="with --resume: train only the semantic head on --sem-batch frames per step; the "
                        "backbone, the Gaussian head and the refiner stay exactly as they were")
    f.add_argument("--sem-cache", action="store_true",
                   help="with --semantic-only: run the frozen backbone once per frame (mirrored or not and "
                        "jittered once) and train the head on the kept outputs, instead of again on every step")
    f.add_argument("--sem-cache-copies", type=int, default=d.sem_cache_copies,
                   help="with --sem-cache: keep each frame this many times, each mirrored and jittered on its own "
                        "draw (the head fits a cache of one copy within a few thousand steps)")
    f.add_argument("--sem-cache-share", type=float, default=d.sem_cache_share,
                   help="with --sem-cache and --stream-data: rooms that arrive join the cache one at a time "
                        "while caching has taken at most this share of the stage (1: every room at once)")
    f.add_argument("--sem-backbone", action="store_true",
                   help="with --semantic-only: train the backbone on the token loss too, holding the Gaussian and "
                        "latent-feature heads' outputs to what they were at the chunk's start (no rendering)")
    f.add_argument("--distill-weight", type=float, default=d.distill_weight,
                   help="with --sem-backbone: weight of holding those outputs (mean squared difference)")
    f.add_argument("--sem-ema", type=float, default=d.sem_ema, metavar="DECAY",
                   help="with --semantic-only: score and keep an exponential moving average of the head's weights "
                        "with this decay per step (0.99 for a few hundred steps, 0.999 for thousands; 0: off)")
    f.add_argument("--sem-teacher", default=d.sem_teacher, metavar="SEGMENTER",
                   help="with --semantic-only: a keyframe segmenter file (gs4 train segmenter) whose token "
                        "probabilities the head also learns on the same frames (KL beside the cross-entropy)")
    f.add_argument("--sem-teacher-weight", type=float, default=d.sem_teacher_weight,
                   help="with --sem-teacher: weight of its KL term")
    f.add_argument("--sem-dropout", type=float, default=d.sem_dropout, metavar="P",
                   help="with --semantic-only: drop this share of the features the head reads at each training "
                        "step (cached or not); validation and the written head use them all")
    f.add_argument("--sem-fresh", action="store_true",
                   help="with --semantic-only and --init-weights: drop the file's semantic head and train a new one "
                        "(with the branches this command names) on its frozen backbone, to compare backbones")
    f.add_argument("--val-seeds", default="", metavar="SEEDS",
                   help="with --semantic-only: synthetic rooms below 1000 (e.g. 960-975; keep them apart from "
                        "the rooms you evaluate on) scored every --val-every steps; the chunk keeps the best head")
    f.add_argument("--val-every", type=int, default=d.val_every, help="semantic steps between validation scores")
    f.set_defaults(func=cmd_fit)

    m = tsub.add_parser("ensemble", help="one weights file whose semantic head averages the heads of several "
                        "semantic-only chunks from the same weights (their log-probabilities)")
    m.add_argument("weights", nargs="+", help="weights files (a .json beside each); the first is kept whole")
    m.add_argument("--out", required=True, help="weights file to write (a .json and MODEL_CARD.md go beside it)")
    m.set_defaults(func=cmd_ensemble)

    c = tsub.add_parser("calibrate", help="scale the predicted Gaussians by the factor that maps validation rooms "
                        "best (held-out PSNR of the whole network path), folded into the weights")
    c.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="networks file to calibrate")
    c.add_argument("--out", required=True, help="calibrated networks file to write (its .json beside it)")
    c.add_argument("--seeds", default="960-967", help="validation rooms (960-999), e.g. 960-967")
    c.add_argument("--factors", default="1,0.94,0.88,0.82", help="scale factors to try (1 is always tried)")
    c.add_argument("--extend", type=int, default=3,
                   help="factors tried past the grid's small edge while the best sits on it")
    c.add_argument("--frames", type=int, default=40)
    c.add_argument("--width", type=int, default=640)
    c.add_argument("--height", type=int, default=480)
    c.add_argument("--device", default="auto")
    c.add_argument("--workdir", default="", help="each factor's rows, reused by a later call (default: beside --out)")
    c.add_argument("--factor", type=float, default=0.0,
                   help="write --out scaled by this factor, choosing nothing (to evaluate one factor)")
    c.add_argument("--undo", action="store_true",
                   help="write --out as the file --weights was calibrated from (its recorded factor divided out)")
    c.add_argument("--score-only", action="store_true",
                   help="score just these factors into --workdir and write no file (a share of the grid)")
    c.set_defaults(func=cmd_calibrate)

    from ..core.nets.segmenter import DEFAULT_SEGMENTER
    from ..train.segmenter import SegmenterOptions

    so = SegmenterOptions()
    g = tsub.add_parser("segmenter", help="train the keyframe segmenter of the final semantic pass for one "
                        "time-boxed chunk (rooms rendered by --workers while the GPU trains)")
    g.add_argument("--out", default=str(DEFAULT_SEGMENTER))
    g.add_argument("--init-weights", default="", metavar="SEGMENTER", help="continue from a segmenter file")
    g.add_argument("--device", default=so.device)
    g.add_argument("--minutes", type=float, default=so.minutes, help="wall budget of the chunk, data included")
    g.add_argument("--steps", type=int, default=so.steps, help="training steps (0: fill the time budget)")
    g.add_argument("--min-rooms", type=int, default=so.min_rooms, help="rooms made before the first step")
    g.add_argument("--seeds", type=int, default=so.seeds, help="rooms to ask the workers for")
    g.add_argument("--first-seed", type=int, default=so.first_seed, help="first training room (>= 1000)")
    g.add_argument("--frames", type=int, default=so.frames, help="frames per room")
    g.add_argument("--step", type=int, default=so.step, help="every step-th frame of the room's camera path")
    g.add_argument("--width", type=int, default=so.width)
    g.add_argument("--height", type=int, default=so.height)
    g.add_argument("--batch", type=int, default=so.batch)
    g.add_argument("--lr", type=float, default=so.lr)
    g.add_argument("--class-power", type=float, default=so.class_power)
    g.add_argument("--workers", type=int, default=so.workers, help="processes rendering rooms")
    g.add_argument("--val-seeds", default="", help="rooms below 1000 scored every --val-every steps; the best "
                   "network seen is kept (e.g. 960-999; keep them apart from the rooms you evaluate on)")
    g.add_argument("--val-every", type=int, default=so.val_every)
    g.add_argument("--widths", default=",".join(str(w) for w in so.widths), help="encoder widths, strides 2-32")
    g.add_argument("--decoder", type=int, default=so.decoder)
    g.add_argument("--seed", type=int, default=so.seed)
    g.set_defaults(func=cmd_segmenter)

    r = tsub.add_parser("recipe", help="run a training recipe's chunks in order, continuing where the last call "
                                       "stopped (gs4_ros/train/recipe.yaml by default)")
    r.add_argument("--dir", required=True, help="run folder: each stage's outputs and recipe_state.json")
    r.add_argument("--recipe", default="", help="recipe YAML (default: the package's gs4_ros/train/recipe.yaml)")
    r.add_argument("--device", default="cuda")
    r.add_argument("--real", default="", help="7-Scenes folder for the stages' rendering-only real frames")
    r.add_argument("--budget-minutes", type=float, default=0.0,
                   help="start no stage that would end past this many minutes (0: run them all); run again to go on")
    r.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every stage's --minutes and --data-minutes (a quick trial of the chain)")
    r.add_argument("--list", action="store_true", help="print the stages and which are done, run nothing")
    r.set_defaults(func=cmd_recipe)

    e = tsub.add_parser("eval", help="ablation table on held-out synthetic seeds (and 7-Scenes frames)")
    e.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    e.add_argument("--seeds", default="900,901", help="held-out synthetic seeds (< 1000), e.g. 900-907")
    e.add_argument("--frames", type=int, default=100)
    e.add_argument("--width", type=int, default=640)
    e.add_argument("--height", type=int, default=480)
    e.add_argument("--device", default="auto")
    e.add_argument("--real", default="", help="7-Scenes folder")
    e.add_argument("--real-frames", default="250:500", help="frames not used by training (default after 0:250)")
    e.add_argument("--variants", default="", help="comma list of geometric,prediction,+refinement,+optimisation,+pruning,'+final semantics',+segmenter,+segmenter+head,geometric+opt (default all)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline setting for every variant, e.g. --set tracking.min_inlier_fraction=0.1")
    e.add_argument("--json", default="", help="write the rows as JSON here")
    e.add_argument("--card", default="", help="put the table into this model card")
    e.set_defaults(func=cmd_eval)


def _command_line(args) -> str:
    """The command that ran, for the weights' training record (main() sets it; a caller
    that built args itself gets the process's command line)."""
    return getattr(args, "command_line", None) or "gs4 " + shlex.join(sys.argv[1:])


def fit_options(args):
    from ..io.synthetic.seeds import seed_list
    from ..train.fit import FitOptions

    return FitOptions(out=args.out, ckpt=args.ckpt, resume=args.resume, init_weights=args.init_weights,
                      device=args.device, minutes=args.minutes, data_minutes=args.data_minutes,
                      stream_data=args.stream_data, steps=args.steps, refine_steps=args.refine_steps,
                      refine_fraction=args.refine_fraction, width=args.width, height=args.height, seeds=args.seeds,
                      frames=args.frames, step=args.step, batch=args.batch, lr=args.lr, real=args.real,
                      real_frames=args.real_frames, p_real=args.p_real,
                      clip_lengths=[int(x) for x in args.clip_lengths.split(",") if x.strip()], seed=args.seed,
                      strides=[int(x) for x in args.strides.split(",") if x.strip()],
                      token_weight=args.token_weight, sem_batch=args.sem_batch, class_power=args.class_power,
                      workers=args.workers,
                      new_refiner=args.new_refiner, sem_context=args.sem_context,
                      sem_geometry=args.sem_geometry, sem_attention=args.sem_attention,
                      semantic_only=args.semantic_only, sem_cache=args.sem_cache, sem_backbone=args.sem_backbone,
                      sem_cache_copies=args.sem_cache_copies, sem_cache_share=args.sem_cache_share,
                      distill_weight=args.distill_weight, sem_ema=args.sem_ema, sem_teacher=args.sem_teacher,
                      sem_teacher_weight=args.sem_teacher_weight, sem_dropout=args.sem_dropout, sem_fresh=args.sem_fresh,
                      fill_holes=args.fill_holes,
                      blend=args.blend, val_seeds=seed_list(args.val_seeds) if args.val_seeds else [],
                      val_every=args.val_every,
                      command=_command_line(args))


def options_from_command(command: str) -> Optional[dict]:
    """The FitOptions (as a dict) of a recorded `gs4 train fit ...` command line, so that a
    model card describes each chunk by its own options; None if it is not one. An option
    the command left out reads as today's default."""
    from dataclasses import asdict

    from .main import build_parser

    words = shlex.split(command or "")
    if words[:3] != ["gs4", "train", "fit"]:
        return None
    try:
        return dict(asdict(fit_options(build_parser().parse_args(words[1:]))), command=command)
    except SystemExit:      # argparse rejects a command of an older version of the CLI
        return None


def cmd_fit(args) -> int:
    from ..train.fit import fit

    opts = fit_options(args)
    s = fit(opts)
    last = s["chunks"][-1]
    print(f"trained {last['predictor_steps']} predictor steps, {last.get('semantic_steps', 0)} semantic-head steps, "
          f"{last['refiner_clips']} refiner clips "
          f"in {last['seconds']:.0f} s; final predictor loss {last['predictor_final'].get('loss', float('nan')):.4f}, "
          f"refiner loss {last['refiner_final'].get('loss', float('nan')):.4f}; weights {opts.out}")
    return 0


def cmd_segmenter(args) -> int:
    from ..io.synthetic.seeds import seed_list
    from ..train.segmenter import SegmenterOptions, train_segmenter

    opts = SegmenterOptions(out=args.out, init_weights=args.init_weights, device=args.device, minutes=args.minutes,
                            steps=args.steps, min_rooms=args.min_rooms, seeds=args.seeds, first_seed=args.first_seed,
                            frames=args.frames, step=args.step, width=args.width, height=args.height,
                            batch=args.batch, lr=args.lr, class_power=args.class_power, workers=args.workers,
                            val_seeds=seed_list(args.val_seeds) if args.val_seeds else [],
                            val_every=args.val_every, widths=[int(w) for w in args.widths.split(",")],
                            decoder=args.decoder, seed=args.seed, command=_command_line(args))
    meta = train_segmenter(opts)
    c = meta["chunks"][-1]
    val = f", validation token mIoU {max(m for _, m in c['validation']):.4f} (kept step {c['kept_step']})" \
        if c["validation"] else ""
    print(f"segmenter: {c['steps']} steps on {c['frames']} frames of {c['rooms']} rooms in {c['seconds']:.0f} s "
          f"({c['device']}); " + (f"loss {c['loss_first']:.4f} -> {c['loss_final']:.4f}" if c["steps"] else "no step taken")
          + f"{val}; weights {opts.out}")
    return 0


def cmd_recipe(args) -> int:
    from pathlib import Path

    from ..train.recipe import DEFAULT_RECIPE, load_recipe, read_state, run_recipe, stage_argv

    stages = load_recipe(args.recipe or DEFAULT_RECIPE)
    if args.list:
        done = {d["name"]: d for d in read_state(args.dir)["stages"]}
        for st in stages:
            d = done.get(st.name)
            mark = (f"~{st.minutes():g} min" if d is None else f"done in {d['seconds']:.0f} s"
                    if d["recipe_args"] == st.args else "ran otherwise")
            print(f"{st.name:12s} {mark:18s} gs4 {shlex.join(stage_argv(st, Path(args.dir), args.device, args.real))}")
            if d is not None and d.get("ran_by"):   # a stage run by a script with the recipe's arguments, put in the folder
                print(f"{'':12s} ran by {d['ran_by']}: gs4 {shlex.join(d['argv'])}")
        return 0
    state = run_recipe(args.dir, stages, args.device, args.real, args.budget_minutes, args.time_scale)
    ran = ", ".join(f"{d['name']} {d['seconds']:.0f} s" for d in state["stages"])
    print(f"recipe: {len(state['stages'])} of {len(stages)} stages done ({ran}); "
          + (f"next: {state['next']} (run again)" if state["next"] else "finished"))
    return 0


def cmd_ensemble(args) -> int:
    from ..train.ensemble import build_ensemble

    summary = build_ensemble(args.weights, args.out, command=_command_line(args))
    print(f"wrote {args.out}: {summary['ensemble']['heads']} semantic heads on one backbone")
    return 0


def cmd_calibrate(args) -> int:
    from ..io.synthetic.seeds import seed_list
    from ..train.calibrate import calibrate

    if args.undo:
        from ..train.calibrate import undo

        f = undo(args.weights, args.out)
        print(f"wrote {args.out} ({args.weights} without its scale factor x{f:g})")
        return 0
    if args.factor:
        from ..train.calibrate import write_scaled

        write_scaled(args.weights, args.out, args.factor, {"factor": args.factor, "command": _command_line(args),
                                                           "rule": "given on the command line"})
        _card_beside(args.out)
        print(f"wrote {args.out} (scales x{args.factor:g} of {args.weights})")
        return 0
    factors = [float(f) for f in args.factors.split(",") if f.strip()]
    rec = calibrate(args.weights, args.out, seed_list(args.seeds), factors, args.frames, args.device,
                    args.workdir or None, args.width, args.height, command=_command_line(args),
                    score_only=args.score_only, extend=args.extend)
    print("| scale factor | held-out PSNR dB | held-out depth L1 cm | map mIoU % | #G | ATE cm |")
    print("|---|---|---|---|---|---|")
    for f, s in rec["grid"].items():
        mark = " (chosen)" if rec["factor"] is not None and float(f) == rec["factor"] else ""
        print(f"| {f}{mark} | {s['heldout_psnr']:.3f} | {s['heldout_depth_l1_cm']:.3f} | {100 * s['miou']:.1f} | "
              f"{s['num_gaussians']:.0f} | {s['ate_rmse_cm']:.2f} |")
    if rec["factor"] is not None:
        _card_beside(args.out)
        print(f"wrote {args.out} (scales x{rec['factor']:g}, {len(rec['seeds'])} validation rooms)")
    return 0


def _card_beside(weights):
    """A model card beside a calibrated file, as `fit` writes one beside its weights (the
    training record and the factor; the evaluation section empty until `gs4 train eval
    --card` fills it), for a file whose record holds its training chunks."""
    import json
    from pathlib import Path

    from ..train.card import write_card

    summary = json.loads(Path(weights).with_suffix(".json").read_text())
    if summary.get("chunks"):
        write_card(Path(weights).parent / "MODEL_CARD.md", summary, weights)


def cmd_eval(args) -> int:
    from ..train.ablation import ablation, table
    from ..io.synthetic.seeds import seed_list

    seeds = seed_list(args.seeds)
    only = [v.strip() for v in args.variants.split(",") if v.strip()] or None
    from ..core.config import parse_overrides

    rows = ablation(args.weights, seeds, args.frames, args.width, args.height, args.device, args.real,
                    args.real_frames, args.json, only, parse_overrides(args.set))
    md = table(rows)
    print(md)
    if args.card:
        from ..train.card import append_eval

        append_eval(args.card, md, _command_line(args),
                    note="ho = held-out frames (tracked, never mapped); geometric mIoU uses the frames' label images, "
                         "the network rows use the semantic head. geometric+opt is a peer, not a step: the geometric "
                         "initialiser with the same joint step and pruning as the last network rows.")
    return 0
