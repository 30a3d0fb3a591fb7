"""Print one recipe stage's `gs4 train` arguments for a device script that runs the stage
on weights of its own choosing: the stage as `gs4 train recipe` fills it in
(recipe.stage_argv), without its --init-weights / --ckpt / --out, with its time boxes set
here. Usage: stage_args.py STAGE MINUTES DATA_MINUTES [REAL_FOLDER]"""
import sys

from gs4_ros.train.recipe import load_recipe, stage_argv


def main(argv):
    name, minutes, data_minutes = argv[0], float(argv[1]), float(argv[2])
    real = argv[3] if len(argv) > 3 else ""
    stage = next((s for s in load_recipe() if s.name == name), None)
    if stage is None:
        raise SystemExit(f"no stage {name!r} in the recipe")
    a = stage_argv(stage, "/tmp", "cuda", real)[1:]
    for k in ("--init-weights", "--ckpt", "--out"):
        if k in a:
            i = a.index(k)
            del a[i:i + 2]
    a[a.index("--minutes") + 1], a[a.index("--data-minutes") + 1] = f"{minutes:g}", f"{data_minutes:g}"
    print(" ".join(a))


if __name__ == "__main__":
    main(sys.argv[1:])
