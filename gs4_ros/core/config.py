"""Pipeline configuration: nested dataclasses with documented defaults.

The same tree is read from YAML (config/*.yaml), from CLI overrides ("tracking.photo_weight=0.2")
and from ROS parameters (flattened with dots, e.g. `pipeline.tracking.iterations`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List

SCANNET20_CLASSES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
]


@dataclass
class TrackingConfig:
    """Dense RGB-D frame-to-model alignment against views rendered from the map."""

    pyramid_levels: int = 3                 # finest level is `finest_level`; each coarser halves
    finest_level: int = 0                   # 0 = input resolution, 1 = half, ...
    iterations: List[int] = field(default_factory=lambda: [4, 6, 10])  # finest ... coarsest
    photo_weight: float = 0.05              # weight of the photometric term (metres per unit intensity)
    # Photometric term on pyramid levels >= this only. 1 removes the finest level's pull of
    # the blurred rendered colour (synthetic demo ATE 0.57 -> 0.34 cm) but cost 7-Scenes
    # 0-299 (320x240) 1.98 -> 2.13 cm, so the finest level keeps it.
    photo_min_level: int = 0
    # Past this depth (m; 0 = off) the photometric weight falls like the depth term's
    # inverse variance, so far pixels keep the balance the two terms have here. Far depth
    # weighs little and the photometric term, aligned to a render whose texture the
    # compositing of overlapping discs shifts, then sets the pose (room 914 at 5 m: pulled
    # 3.35 cm from the truth, 0.34 cm at 2 m). 2 m gave 20 held-out rooms a mean ATE of
    # 0.46 cm against 0.50 (914 0.89 -> 0.32) but room 916, whose far wall only its
    # texture pins, 0.32 -> 1.11 cm and 0.1 dB less held-out PSNR; 7-Scenes 0-499
    # (640x480, CPU) 2.13 -> 2.09 cm. Off by default (docs/results.md, "Far, noisy depth").
    photo_falloff_depth: float = 0.0
    # Huber threshold of the depth residual, metres. 5 mm (was 10): on 7-Scenes redkitchen
    # 0-499 at 640x480 (H200, benchmarks/sweep.py) ATE 2.56 -> 2.43 cm, in two runs; on the
    # synthetic demo (320x240, CPU) 1.77 -> 2.00 cm. Real depth's outliers (edges, multipath)
    # weigh more than the synthetic sensor model's, so the real sequence decides.
    huber_depth: float = 0.005
    huber_photo: float = 0.05               # intensity in [0, 1]
    max_correspondence: float = 0.08        # metres; ICP outlier gate (scaled up at coarse levels)
    max_normal_angle_deg: float = 35.0
    # Gates that widen with the depth noise model (tracker._load_noise_gates): a pixel's
    # distance gate is at least this many sigmas of the difference of two depth samples...
    gate_noise_sigmas: float = 3.0
    # ... and its normal gate at least this times the angle depth noise gives its observed
    # normal, up to normal_gate_max_deg (0: the fixed max_normal_angle_deg everywhere).
    normal_gate_noise_factor: float = 1.0
    normal_gate_max_deg: float = 80.0
    # Observed normals are differenced over round(width / normal_width) pixels either side
    # (at least 1): the same angular baseline at any image size (0: always 1 pixel).
    normal_width: int = 320
    min_depth: float = 0.1
    max_depth: float = 8.0
    render_alpha_min: float = 0.8           # rendered pixels below this silhouette are not model
    # The tracker's reference is rendered with every Gaussian's extent times this (a keyframe
    # then renders co-visibility itself). Smaller discs overlap less, which weakens the
    # photometric pull of front-to-back compositing: 0.8 gave 7-Scenes 0-499 (640x480, CPU)
    # ATE 2.13 -> 1.97 cm, room 914's pull from the truth 3.35 -> 2.07 cm, but 20 held-out
    # rooms a mean ATE of 0.53 cm against 0.50 (909 and 910 worse); not yet the default
    # (docs/results.md, "Far, noisy depth").
    reference_scale: float = 1.0
    # Align to the reference's colour blended over each surface (pipeline's
    # render_blend_opacity) instead of composited front to back: 20 held-out rooms' mean
    # ATE 0.50 -> 0.41 cm (blend scaled by the silhouette), but 7-Scenes 0-499 (640x480,
    # CPU) 2.13 -> 2.29 cm; at full strength 2.23 cm and room 918 lost. So off
    # (docs/results.md, "Colour blended over a surface").
    surface_blend: bool = False
    min_inlier_fraction: float = 0.2        # health: below this tracking is "lost"
    bilateral_radius: int = 0               # edge-preserving pre-filter of observed depth (0 = off)
    motion_model: str = "constant_velocity"  # or "static"
    # Lost frames (below min_inlier_fraction) keep the prediction. The constant-velocity
    # model continues the last tracked velocity for at most this many of them in a row,
    # then holds the pose: continued without end, two seconds of a blocked view (60 frames
    # at 1 cm each) carried the estimate 66 cm away and the tracker never found the map
    # again. After a loss the velocity restarts from two tracked frames.
    max_extrapolated_frames: int = 5
    # Seed tracking with the relative motion of the frames' external odometry (wheels, VIO:
    # frame.meta["odom_camera_pose"], set by the node from its odom_prior topic) when this
    # frame and the previous one both carry it; the motion model otherwise.
    use_motion_prior: bool = True
    # Weight of a prior that holds the pose at the motion model's prediction, relative to
    # the data's own information (the mean diagonal of its translation and of its rotation
    # block), so it decides the directions a view constrains weakly. Room 918's close
    # striped wall (640x480, CPU, held out every 10th frame): ATE 3.24 -> 0.86 cm at 0.03,
    # 0.22 at 0.1; the networks' 20.04 -> 0.22 cm at 0.03. But every indoor view has a
    # weak slide-and-tilt direction (about 2% of the mean information, room 918's as
    # much), where the prediction then outweighs true small corrections: the other 19
    # held-out rooms 0.354 -> 0.420 cm (16 of the 19 worse), 7-Scenes 0-499 2.13 -> 2.28 cm
    # (2.44 at 0.1). So 0 (off) by default (docs/results.md, "A prior at the prediction").
    prediction_prior: float = 0.0
    # On CUDA, solve each Gauss-Newton step on the GPU (fixed iteration counts, one graph
    # per level, one host round trip per frame) instead of on the host (early stopping).
    device_solver: bool = True


@dataclass
class MappingConfig:
    """Geometric (v0) initialiser, co-visibility insertion, pruning and keyframes."""

    stride: int = 8                         # one Gaussian per stride x stride block
    scale_multiplier: float = 0.7           # tangential sigma relative to the block footprint
    thickness_ratio: float = 0.1            # normal-axis sigma relative to tangential sigma
    init_opacity: float = 0.95
    silhouette_threshold: float = 0.5       # insert where the rendered silhouette is below this
    front_margin: float = 0.04              # ... or where observed depth is this far (m, x depth) in front
    prune_opacity: float = 0.005
    freeze_after: int = 8
    keyframe_translation: float = 0.05      # metres since the last keyframe
    keyframe_rotation_deg: float = 5.0
    keyframe_max_interval: int = 10         # frames
    max_depth: float = 6.0                  # do not map beyond (noisy)
    min_depth: float = 0.1
    # Keyframes: depth holes of at least this many pixels whose surroundings are one plane
    # (glass, dark or shiny patches, dropouts) are mapped on that plane (core/depth_fill).
    # Tracking and fusion use the measured depth only. 0 disables.
    fill_holes_min_area: int = 64
    # A hole whose surroundings are not one plane takes the frame's planes that most of its
    # surroundings lie on with nothing behind them (a wall past a plant, or beyond the
    # sensor's range), each pixel the nearest of them. Filled planes may reach this far
    # (measured depth still stops at max_depth).
    fill_holes_occluded: bool = True
    fill_holes_max_depth: float = 10.0
    # Behind an occluder a plane continues at most this fraction of the image width from the
    # hole's surroundings that lie on it (a hole sprawling from a near object to a far wall
    # is not filled with that wall all the way).
    fill_holes_occluded_reach: float = 0.25
    # Such a hole whose surroundings reach this depth (metres) in good part is taken to lie
    # beyond the sensor's range (a far wall seen only as speckles at the limit) and also gets
    # a backdrop facing the camera at that limit (core/depth_fill). Set it a little below
    # the sensor's range or max_depth, whichever is nearer; 0 disables.
    fill_holes_beyond_range: float = 5.0
    # Start the fill on the host while the frame is tracked when the motion predicts a
    # keyframe (core/fill_ahead; same result, less keyframe latency): "gpu" when tracking
    # runs on a GPU (on the CPU it would compete with tracking for the cores), "always",
    # "never".
    fill_holes_ahead: str = "gpu"
    # Remove the expected depth-noise covariance before fitting each block's plane, so its
    # normal is not tilted by noise along the rays (see initializer.block_gaussians). On the
    # CPU at 320x240: synthetic demo ATE 1.91 -> 0.57 cm, 7-Scenes 0-299 2.10 -> 1.98 cm.
    normal_noise_compensation: float = 1.0  # times the noise model (depth_noise_sigma); 0 = off
    # A keyframe decides which blocks the map already explains from the tracker's render of
    # the map when tracking moved at most this far from the prediction it rendered at
    # (saves one full render per keyframe); 0 renders again at the tracked pose.
    covis_reuse_max_step: float = 0.01      # metres
    covis_reuse_max_deg: float = 0.5
    # Depth fusion: each tracked frame moves visible Gaussians along their normals by a
    # confidence-weighted running average (confidence capped here). 0 disables.
    fuse_max_weight: float = 60.0
    fuse_gate: float = 0.03                 # metres (+ 1% of depth) surface-to-observation gate
    # Semantic fusion: each keyframe's class evidence (semantic head or label image) is
    # averaged into the Gaussians it sees, over at most this many views (core/semantic_fusion).
    # 0 keeps the class a Gaussian was born with. Held-out rooms 900-902, shipped weights,
    # prediction row: mIoU 41.5% at 0, 45.6% at 5, 45.9% at 20 and at 100 (docs/results.md).
    semantic_fusion_max_views: int = 20
    semantic_fusion_gate: float = 0.05      # metres (+ 2% of depth) Gaussian-to-block-depth gate


    @property
    def map_max_depth(self) -> float:
        """Farthest depth a keyframe's block may be mapped at: the measured depth stops at
        max_depth (the pipeline removes what lies beyond before filling holes), planes
        filled across holes may go on to fill_holes_max_depth."""
        return max(self.max_depth, self.fill_holes_max_depth) if self.fill_holes_min_area > 0 else self.max_depth


@dataclass
class BackendConfig:
    """Keyframe graph, loop closure, pose-graph optimisation and the few-iteration joint
    pose-Gaussian optimisation (issue 4). Defaults were set on synthetic loops at 160x120
    and 7-Scenes redkitchen at 320x240 on the CPU, not yet checked at VGA on the GPU;
    see gs4_ros/core/backend/."""

    # Off by default until it pays: on the H200, 7-Scenes redkitchen 0-499 at 640x480
    # (benchmarks/backend.py) gave ATE 2.70 cm on vs 2.56 off, PSNR +0.18 dB, 28 vs 47 FPS.
    enabled: bool = False                   # off: tracking and mapping exactly as without it
    synchronous: bool = False               # True: loop detection runs inside process() (tests,
                                            # deterministic replays); False: a background thread
    keyframe_image_width: int = 160         # per-keyframe rgb/depth kept (and joint-optimised) at
                                            # this width: bounds memory and joint-optimisation cost
    max_keyframe_images: int = 2000         # oldest keyframes' images dropped beyond this (loop
                                            # detection and joint optimisation skip them)
    # Edge information: the Gauss-Newton J^T J at the solution (odometry: the tracker's; loops:
    # the dense verification's), rescaled so its translation block has this standard
    # deviation, shape kept (see keyframe_graph.normalize_information).
    odom_sigma: float = 0.02                # metres per keyframe step (drift is systematic: generous)
    loop_sigma: float = 0.01                # metres
    # External odometry (wheels, VIO: frame.meta["odom_camera_pose"]) as a factor: consecutive
    # keyframes that both carry one are also linked by its relative motion, an edge beside
    # the tracker's (only that motion counts, not the odometry's own frame). Diagonal
    # information from these standard deviations per keyframe step. The defaults take the
    # translation mostly from the tracker (metric depth; wheel distances are off by a
    # scale a loop cannot remove) and much of the rotation from the odometry (a gyro's is
    # good): benchmarks/odom_prior_edges.py, where 0.02 m / 1 deg (the tracker's weight)
    # did worse than the loop alone with a 2%-long odometry.
    odom_prior_edges: bool = True
    odom_prior_sigma: float = 0.1           # metres per keyframe step
    odom_prior_sigma_deg: float = 0.5       # degrees per keyframe step
    # Take the edge's covariance from the odometry's own pose covariance instead (frame.meta
    # "odom_camera_covariance", the node's from nav_msgs/Odometry pose.covariance): what the
    # step between the two keyframes added to it, as a dead-reckoning odometry's grows. A
    # direction where nothing was added (a constant or all-zero covariance, as many drivers
    # publish) keeps the sigma above; a remainder that is not positive keeps them all.
    odom_prior_use_covariance: bool = False
    loop_closure: bool = True               # False: keyframe graph and joint optimisation only
    # Relocalisation: after this many lost frames in a row the lost frame goes to the
    # back-end thread, which matches its ORB features against every indexed keyframe
    # (recent ones too), verifies the best like a loop and hands back a pose that seeds
    # tracking of a later frame (moved by the external odometry between the two frames,
    # when they carry one). Holding the pose (tracking.max_extrapolated_frames) only
    # finds the map again if the camera comes back to where tracking was lost. Uses the
    # loop-closure index; with loop_closure off the first request indexes the keyframes
    # that still hold images. 0 = off.
    relocalize_after: int = 3
    # Loop candidates
    orb_features: int = 500
    min_keyframe_gap: int = 15              # never test the last N keyframes (they are odometry)
    max_candidates: int = 3                 # verified per query, best appearance score first
    min_appearance_matches: int = 40        # index votes (query descriptors whose nearest neighbour,
                                            # Hamming <= 40, lies in that keyframe) for a candidate
    proximity_radius: float = 0.6           # metres: pose-proximity candidates (current estimate)
    proximity_angle_deg: float = 35.0
    # Geometric verification
    pnp_reprojection_px: float = 3.0        # at the stored keyframe resolution
    min_pnp_inliers: int = 25
    min_pnp_inlier_ratio: float = 0.35
    max_pnp_reprojection_px: float = 1.5    # mean reprojection error of the inliers
    dense_min_inlier_fraction: float = 0.3  # dense refinement (the tracker, keyframe to keyframe):
                                            # fraction of the query's valid pixels that align
    dense_max_rms_depth: float = 0.02       # metres
    max_dense_correction: float = 0.25      # metres: dense refinement may not move PnP further
                                            # (PnP at low resolution is often 5-15 cm off, dense ~mm)
    # Pose graph
    loop_robust: str = "cauchy"             # cauchy | huber | none (loop edges only)
    loop_robust_k: float = 3.0              # kernel width in whitened units (after an L2 start,
                                            # see pose_graph.optimize)
    loop_max_chi2: float = 50.0             # loops whitened-squared-error above this after the robust
                                            # solve are dropped from the graph as outliers
    optimize_iterations: int = 50           # Levenberg-Marquardt
    optimize_in_subprocess: bool = True     # threaded mode: run gtsam in a child process (gtsam
                                            # holds the GIL, which would stall tracking)
    # Joint optimisation (GS4 step 5)
    joint_enabled: bool = True
    joint_iterations: int = 3               # 1-5 Adam steps
    joint_top_k: int = 4                    # keyframes rendered and whose poses are optimised
    joint_trigger_translation: float = 0.02  # metres a back-end correction moved a keyframe
    joint_trigger_rotation_deg: float = 1.0
    joint_trigger_step: float = 0.08        # metres tracking moved away from the prediction
    joint_trigger_residual_ratio: float = 2.0  # rms depth residual over its running median
    joint_min_interval: int = 10            # frames between tracking-triggered runs
    joint_on_keyframe: bool = False         # also run after every keyframe is mapped (GS4's
                                            # per-frame optimisation; the ablation's "+optimisation")
    # The step's colours also go to what tracking renders (GaussianMap.track_colors). With
    # poses and geometry stepped too, the model is fitted as a whole: off, 7-Scenes 250-349
    # held-out PSNR fell 19.97 -> 19.58 dB (ablation, full path). With colour-only steps,
    # off keeps the trajectory exactly (0-499: ATE 2.20 cm, 2.40 with it on; docs/results.md).
    joint_colors_to_tracking: bool = True
    # Fit the colour blended over each surface (the views the pipeline publishes, see
    # render_blend_*) rather than the plain composite: held-out PSNR up on every held-out
    # room, but a render pass more per step: five default iterations take 37.7 ms on an
    # H100 instead of 20.9 (issue 4 asks <= 30), so off by default (config/map_quality.yaml
    # sets it; docs/results.md).
    joint_blend: bool = False
    joint_lr_pose: float = 1.0e-3           # Adam on the se(3) deltas
    joint_lr_means: float = 1.0e-4
    joint_lr_colors: float = 5.0e-3
    joint_lr_opacity: float = 1.0e-2
    joint_lr_scales: float = 1.0e-3
    joint_lr_quats: float = 1.0e-3
    joint_depth_weight: float = 1.0         # L1 depth term (metres) next to 0.8 L1 + 0.2 (1 - SSIM)
    # Final map refinement (SLAMPipeline.refine_map), run by finish() at the end of a
    # sequence (dataset runs, bag replays) and by the node's ~/refine_map service: this many
    # passes over every keyframe that kept its images, joint_top_k views at a time,
    # joint_iterations Adam steps each, on every Gaussian field at the defaults of the rates
    # above (whatever a config sets for the online step), poses fixed. With tracking done
    # the geometry may move; online it would shift the tracker's reference. Networks +
    # config/map_quality.yaml (which sets 12), rooms 900-905: 25.74 -> 29.12 dB held out
    # (docs/results.md). 0 = off.
    final_refine_rounds: int = 0
    # Halfway through those passes, drop the Gaussians that cover less than this many pixels
    # (blending weight, full-size pixels) in every keyframe's view (map_compaction); the
    # remaining passes let their neighbours take over. 0 = off.
    final_compact_pixels: float = 0.0


@dataclass
class NetworkConfig:
    """Learned initialiser (initializer: network): Gaussian prediction + refinement networks."""

    weights: str = ""                       # networks file; "" = the shipped gs4_ros/weights/gs4_nets.pt
    refine: bool = True                     # run the refinement network after each insertion
    # false: the refiner changes scale, rotation and opacity but not colour. Without its
    # colour residual held-out room 918 (a close striped wall) slides 4.8 cm, not 9.8, but
    # room 916 2.9 cm, not 0.7, and 19 of 20 rooms lose PSNR (mean -0.27 dB): not the
    # default (docs/results.md, "Networks: training and targets").
    refine_colour: bool = True
    semantics: str = "network"              # network | frame (use a frame's label image where it has one)
    max_refine: int = 32768                 # most Gaussians in one refinement pass (new ones first)
    visible_margin: float = 0.05            # m (+5% of depth): map Gaussians this near the observed surface are refined
    # At the end of a sequence (gs4 run, bag replay, the node's ~/refine_map) each kept
    # keyframe's classes are predicted again with test-time augmentation (the frame as it is,
    # mirrored, and at each of the model's scales below; log-probabilities averaged) and fused
    # into the map anew (nets/semantic_tta). Several head passes per keyframe: too slow per
    # frame, nothing at the end. Keyframe images are kept for it on the host (about 1.5 MB a
    # 640x480 keyframe), at most final_semantics_max_keyframes (past it every second one
    # goes, so those kept still span the run).
    final_semantics: bool = True
    final_semantics_mirror: bool = True
    final_semantics_max_keyframes: int = 500
    # What the final pass runs: "segmenter", the keyframe segmenter (nets/segmenter; a wider
    # network than the shared backbone, too slow for every mapped frame but not for once a
    # keyframe at the end), or "head", the predictor's own semantic head (GS4's design). A
    # missing segmenter file falls back to the head with a warning.
    final_semantics_model: str = "segmenter"
    # Rescaled passes, each model its own: on the validation rooms they lowered the
    # segmenter's token mIoU (83.3% plain, 84.0 mirrored, 81.6 with 0.75x and 1.25x too)
    # and raised the head's (63.8, 65.2, 67.5; docs/results.md).
    final_semantics_scales: List[float] = field(default_factory=list)
    final_semantics_head_scales: List[float] = field(default_factory=lambda: [0.75, 1.25])
    segmenter_weights: str = ""             # "" = the shipped gs4_ros/weights/gs4_segmenter.pt
    # Weight of the head's evidence mixed into the segmenter's (each model with its own
    # passes; log-probabilities averaged with weights 1-w and w). 0 runs the segmenter alone;
    # ignored when the head runs the pass. Costs the head's passes on top. 0.2 raised map
    # mIoU on the three groups of 20 held-out rooms measured (+0.8 and +0.7 points with
    # config/map_quality.yaml on an H100, +0.6 on the defaults on a CPU; docs/results.md).
    final_semantics_head_weight: float = 0.2
    # Give each keyframe, as it is mapped, the final pass's model's classes (one plain pass
    # of the segmenter, the head's share mixed in as above) instead of the head's alone, so
    # the live map's classes are close to what the end pass gives (live map mIoU 67.7 ->
    # 76.6% on rooms 900-919, CPU; the end result is the same either way, the pass replaces
    # the evidence). One segmenter pass per keyframe on top of the 8 ms path (5.8 ms at
    # 640x480 on an H100, 0.25 s on a 2-core CPU); off keeps GS4's one-backbone mapping.
    online_segmenter: bool = False


@dataclass
class OpenVocabConfig:
    """Open-vocabulary queries (core/open_vocab): a bank of region embeddings, one id per Gaussian."""

    enabled: bool = True                    # keep the bank at keyframes (needs semantics in the map)
    # classes: the built-in class-space encoder (class names, synonyms, groups; no model),
    # or "package.module:factory" for a vision-language encoder of your own (README).
    encoder: str = "classes"
    lexicon: str = ""                       # YAML {phrase: [class, ...]} added to the built-in words
    merge_threshold: float = 0.9            # cosine at or above which a region joins a bank entry
    max_entries: int = 4096                 # past this, regions join their nearest entry
    threshold: float = -1.0                 # relevance a Gaussian needs to match; < 0: the encoder's own
    # A query's matches are split into objects whose voxels of this size touch (metres);
    # smaller groups than instance_min_gaussians are specks, not objects.
    instance_voxel: float = 0.1
    instance_min_gaussians: int = 10


@dataclass
class PipelineConfig:
    device: str = "auto"                    # auto | cpu | cuda[:N]
    renderer: str = "auto"                  # auto | gsplat | torch
    # Views rendered from the map (published images, evaluation) blend the colour of the
    # Gaussians on the surface a pixel sees without regard to their depth order (a second,
    # faint pass: render.blend_surface_colour), where the two passes' depths agree within
    # render_blend_depth_tol x depth; 0 = plain front-to-back compositing. Where such a
    # pixel's silhouette reaches render_blend_full_alpha its colour shows at full strength
    # (the silhouette dips between one surface's discs; 0 = scaled by the silhouette).
    # 20 held-out rooms' held-out PSNR 24.35 -> 24.64 dB (blend), 25.23 dB (and full
    # strength at 0.5); 7-Scenes 0-499 17.55 -> 17.77 -> 17.86 dB (docs/results.md,
    # "Colour blended over a surface").
    render_blend_opacity: float = 0.1
    render_blend_depth_tol: float = 0.03
    render_blend_full_alpha: float = 0.5
    class_names: List[str] = field(default_factory=lambda: list(SCANNET20_CLASSES))
    initializer: str = "geometric"          # geometric (v0) | network (falls back to geometric without weights)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    open_vocab: OpenVocabConfig = field(default_factory=OpenVocabConfig)
    # Threads of the host's BLAS libraries (numpy/scipy/OpenCV OpenBLAS; not torch's), for
    # the whole process: they only see the hole fill's small products, where more threads
    # gain nothing and spin idle cores (core/host_threads). 0 = the libraries' own default.
    host_blas_threads: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def surface_blend(self) -> Dict[str, float]:
        """The render_blend_* settings as render.blend_surface_colour's keyword arguments,
        so the pipeline's views and training's --blend renders read them one way."""
        return {"opacity_scale": self.render_blend_opacity, "depth_tol": self.render_blend_depth_tol,
                "full_alpha": self.render_blend_full_alpha}

    # -- (de)serialisation -----------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any] | None) -> "PipelineConfig":
        cfg = cls()
        if d:
            _update(cfg, d, "")
        return cfg

    def override(self, dotted: Dict[str, Any]) -> "PipelineConfig":
        """Apply {"tracking.photo_weight": 0.1, ...} in place; unknown keys raise."""
        for key, value in dotted.items():
            obj = self
            parts = key.split(".")
            for p in parts[:-1]:
                if not hasattr(obj, p):
                    raise KeyError(f"unknown configuration key '{key}'")
                obj = getattr(obj, p)
            _set(obj, parts[-1], value, key)
        return self

    def flatten(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}

        def rec(prefix, obj):
            for f in dataclasses.fields(obj):
                v = getattr(obj, f.name)
                k = f"{prefix}{f.name}"
                if dataclasses.is_dataclass(v):
                    rec(k + ".", v)
                else:
                    out[k] = v
        rec("", self)
        return out


def _set(obj, name, value, key):
    if not hasattr(obj, name) or dataclasses.is_dataclass(getattr(obj, name)):
        raise KeyError(f"unknown configuration key '{key}'")
    cur = getattr(obj, name)
    if isinstance(value, str) and not isinstance(cur, str):
        import yaml

        value = yaml.safe_load(value)
    if isinstance(cur, bool):
        value = bool(value)
    elif isinstance(cur, int) and not isinstance(cur, bool):
        value = int(value)
    elif isinstance(cur, float):
        value = float(value)
    elif isinstance(cur, (list, tuple)):
        value = list(value)
    setattr(obj, name, value)


def _update(obj, d: Dict[str, Any], prefix: str):
    for k, v in d.items():
        key = prefix + k
        if not hasattr(obj, k):
            raise KeyError(f"unknown configuration key '{key}'")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            if not isinstance(v, dict):
                raise TypeError(f"configuration key '{key}' needs a mapping")
            _update(cur, v, key + ".")
        else:
            _set(obj, k, v, key)


def parse_overrides(items) -> Dict[str, str]:
    """KEY=VALUE strings (`--set` of the command-line tools and benchmarks) -> the overrides
    dict load_config takes."""
    out = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--set needs KEY=VALUE, got '{it}'")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_config(path: str | None = None, overrides: Dict[str, Any] | None = None) -> PipelineConfig:
    """YAML file plus overrides.

    Accepts the bare tree, a top-level 'pipeline' key, or a ROS 2 parameter file
    (`<node or /**>: ros__parameters: pipeline: ...`), so one config/*.yaml serves the node
    and the CLI.
    """
    d: Dict[str, Any] = {}
    if path:
        import yaml

        with open(path) as f:
            d = yaml.safe_load(f) or {}
        for v in list(d.values()):
            if isinstance(v, dict) and "ros__parameters" in v:
                d = v["ros__parameters"]
                break
        if "pipeline" in d:
            d = d["pipeline"]
    cfg = PipelineConfig.from_dict(d)
    if overrides:
        cfg.override(overrides)
    return cfg
