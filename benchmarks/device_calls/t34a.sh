# After the thirty-fourth session's changes, none of which ran on a GPU: the v0 blocks of a
# batch of frames in one pass (block_gaussians on CUDA) and uncached head steps that skip
# the Gaussian heads. In order: the CUDA tests (the pipeline's CUDA graph builds its
# blocks through the changed block_gaussians), benchmarks/head_step_speed.py (the step
# and the prior in one pass against frame by frame, same call), then t31b's variant G
# again (the uncached head stage, G_MIN minutes, default 8: it made 1717 steps and
# validation 0.534 at step 1600 in the thirty-fourth session's 8 minutes, map mIoU by the
# head 56.2% against the shipped 82.1%) with its evaluation beside the shipped weights.
# First run (thirty-fifth session): one eigh over a 32-frame batch's 153,600 blocks failed
# in cuSOLVER; eigh_probe.py prints which batch sizes run (initializer.EIGH_CHUNK).
# Run under bg.sh (JOB=benchmarks/device_calls/t34a.sh), two calls (about 15 minutes).
# Carry: .devcarry/whl7, .devcarry/recipe, .devcarry/gsplat_so.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
export PYTHONPATH=/tmp/site:$PWD
python3 benchmarks/device_calls/eigh_probe.py 2>&1 | tail -6 > $OUT/eigh.txt   # where cuSOLVER's batched eigh fails
timeout 300 python3 -m pytest -q -p no:cacheprovider -rs test/test_initializer.py test/test_cuda_graph.py test/test_nets.py \
  test/test_segmenter.py test/test_semantic_tta.py test/test_map_compaction.py test/test_open_vocab.py \
  test/test_backend.py::test_graphed_joint_loss_gradients_match_eager_on_cuda 2>&1 \
  | tail -15 > $OUT/pytest.txt
cat $OUT/pytest.txt
timeout 240 python3 benchmarks/head_step_speed.py --device cuda --batch 32 2>&1 | grep -v "^INFO" > $OUT/head_step.txt
cat $OUT/head_step.txt
VARIANTS=G G_MIN=${G_MIN:-8} bash benchmarks/device_calls/t31b.sh
