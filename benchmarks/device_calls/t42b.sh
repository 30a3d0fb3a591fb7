# Forty-second session, second call on the machine t42a.sh warmed (its job runs on beside
# this): unpacks 7-Scenes frames 250-499 next to t42a's 0-249 and marks /tmp/7s500.done,
# on which t42a's job starts its 7-Scenes sweep; then waits on the job like bg.sh.
#   bash benchmarks/device_calls/t42b.sh   (carry .devcarry/7s250b)
export PYTHONPATH=/tmp/site:$PWD
D=/tmp/7s500
python3 benchmarks/pack_frames.py unpack .devcarry/7s250b $D || exit 1
n=$(ls $D/frame-*.depth.png | wc -l)
[ "$n" = 500 ] && touch /tmp/7s500.done || echo "expected 500 frames in $D, found $n"
JOB=benchmarks/device_calls/t42a.sh bash benchmarks/device_calls/bg.sh
