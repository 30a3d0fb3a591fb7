# A third run of the recipe's network stages, each pinned to the steps the shipped file's
# record holds (pinned41.yaml, written by benchmarks/pin_steps.py from recipe.yaml and
# gs4_ros/weights/gs4_nets.json): does a run that trains exactly as much as the shipped
# one also render depth like it? The fresh run (fresh39/) made 5254 predictor steps in
# the same time boxes against the shipped run's 4074, and renders depth 0.37 cm worse in
# all 60 held-out rooms, most of it already in the predictor stages (fortieth session).
# A job for bg.sh, as t31a.sh (which it runs) with its own run folder:
#   JOB=benchmarks/device_calls/t41a.sh bash benchmarks/device_calls/bg.sh
# again within 30 s of each return. BUDGET 21 min: whole-1 .. blend-2 (about 18 min at the
# fresh run's rates); head and refiner continue next session from the returned folder.
# Carry: .devcarry/whl7 .devcarry/7s250 .devcarry/gsplat_so [.devcarry/pin41 to continue]
export RECIPE=benchmarks/device_calls/pinned41.yaml DIR=/tmp/pin41 FROM=${FROM:-.devcarry/pin41}
export BUDGET=${BUDGET:-21}
bash benchmarks/device_calls/t31a.sh
