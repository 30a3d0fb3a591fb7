# A fresh run of the recipe from nothing, as far as one session's device time goes, with
# the shipped networks' cost per mapped frame measured first (the 8 ms target; the one-head
# file had not been timed). The thirty-seventh session's fresh run (whole-1 .. blend, its
# run folder kept only under the ignored .devcarry/) did not outlive that session's
# checkout, so this run starts over; its run folder comes back under $OUT/<stage> as each
# stage ends and is committed (benchmarks/device_calls/fresh39/: the state and the newest stage's files)
# for the next session to continue (t39a.sh).
#  1. benchmarks/nets_speed.py on the shipped file, the GPU to itself;
#  2. whole-1, whole-2 and blend through t31a.sh (BUDGET minutes, default 17: those three
#     stages with their margins take 16.3; t31a starts none that would end past it). A
#     failed machine start took 181 s of this session's 1800 first, so blend-2 waits too.
# Run under bg.sh (JOB=benchmarks/device_calls/t38a.sh), two or three calls (about 21 minutes).
# Carry: .devcarry/whl7 .devcarry/7s250 [.devcarry/gsplat_so]
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
python3 benchmarks/nets_speed.py --device cuda 2>&1 | grep -v "^INFO" | tee $OUT/nets_speed.txt
FROM=/nonexistent DIR=/tmp/fresh BUDGET=${BUDGET:-17} bash benchmarks/device_calls/t31a.sh
